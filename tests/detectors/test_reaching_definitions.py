"""Which definitions of a name reach a read: a later statement of the same block, with no jump or
`try` between, hides the earlier ones, on every path on from them."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from sharpedges.analysis.context import FileContext


def reaching_values(source: str) -> list[str]:
    """The values of `x` that reach the last `use(x)` of the one function in `source`."""
    source = textwrap.dedent(source)
    module = cst.parse_module(source)
    ctx = FileContext("m.py", module, source.lower().encode())
    [function] = ctx.index.nodes(cst.FunctionDef)
    read = [
        call.args[0].value
        for call in ctx.index.nodes(cst.Call)
        if isinstance(call.func, cst.Name) and call.func.value == "use"
    ][-1]
    definitions = ctx.function_facts(function).reaching("x", ctx.order(read))
    return sorted("<parameter>" if d.kind == "param" else ctx.code(d.value) for d in definitions)


@pytest.mark.parametrize(
    "body, expected",
    [
        # the branch's last statement overwrites its first: past the branch, the parameter or the second
        ("if c:\n    x = a\n    x = f(x)\nuse(x)", ["<parameter>", "f(x)"]),
        # inside the branch only its own definition reaches
        ("if c:\n    x = a\n    use(x)", ["a"]),
        # an in-place fill rewrites the tensor the branch built
        ("if c:\n    x = a\n    x.masked_fill_(m, 0)\nuse(x)", ["<parameter>", "x.masked_fill_(m, 0)"]),
        # a loop body can be left between the two: both reach
        ("for i in r:\n    x = a\n    if i:\n        break\n    x = b\nuse(x)", ["<parameter>", "a", "b"]),
        # an exception between them can land in a handler of the function: both reach
        (
            "try:\n    if c:\n        x = a\n        g()\n        x = b\nexcept E:\n    pass\nuse(x)",
            ["<parameter>", "a", "b"],
        ),
        # definitions of different branches hide nothing of each other, and together they hide what came
        # before: one branch always runs
        ("if c:\n    x = a\nelse:\n    x = b\nuse(x)", ["a", "b"]),
        ("if c:\n    x = a\nelif m:\n    x = b\nelse:\n    x = r\nuse(x)", ["a", "b", "r"]),
        # with no `else`, or a branch that does not define it, the earlier definition still reaches
        ("if c:\n    x = a\nelif m:\n    x = b\nuse(x)", ["<parameter>", "a", "b"]),
        ("if c:\n    x = a\nelse:\n    if m:\n        x = b\nuse(x)", ["<parameter>", "a", "b"]),
        # a loop target binds only when the loop runs
        ("if c:\n    x = a\n    for x in r:\n        pass\nuse(x)", ["<parameter>", "a", "r"]),
    ],
)
def test_a_later_statement_of_the_block_hides_earlier_definitions(body: str, expected: list[str]):
    source = "def f(x, c, a, b, r, m):\n" + textwrap.indent(body, "    ") + "\n"
    assert reaching_values(source) == expected
