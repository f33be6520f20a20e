"""What a loop target can be: `possible_values` takes the part of one element of the iterable that the
target's unpacking gives the name, through `zip`, `enumerate`, `reversed`, literal tuples and lists, and a
local list grown by `append` / `extend`; anything else stays unknown (None), never "nothing"."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from sharpedges.analysis.context import FileContext
from sharpedges.analysis.values import possible_values


def values_of_x(body: str) -> list[str] | None:
    """What `x` may be at the last `use(x)` of `def f(xs):` with this body (`a()`, `b()`, `c()` are values
    the resolver knows; the parameter `xs` is not)."""
    source = "def f(xs):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    module = cst.parse_module(source)
    ctx = FileContext("m.py", module, source.lower().encode())
    read = [
        call.args[0].value
        for call in ctx.index.nodes(cst.Call)
        if isinstance(call.func, cst.Name) and call.func.value == "use"
    ][-1]
    values = possible_values(ctx, read)
    return None if values is None else sorted(ctx.code(v) for v in values)


@pytest.mark.parametrize(
    "body, expected",
    [
        # a literal tuple: each of its elements
        ("for x in (a().softmax(-1), b()):\n    use(x)", ["a().softmax(-1)", "b()"]),
        # a local list grown by append, read by a later loop
        ("out = []\nfor t in xs:\n    y = t * 2\n    out.append(y)\nfor x in out:\n    use(x)", ["t * 2"]),
        # extend with a literal list adds its elements
        ("out = [a()]\nout.extend([b(), c()])\nfor x in out:\n    use(x)", ["a()", "b()", "c()"]),
        # zip pairs the arguments' elements; enumerate puts an index first
        ("ws = [a()]\nfor i, (x, v) in enumerate(zip(ws, xs)):\n    use(x)", ["a()"]),
        ("for x, v in zip((a(), b()), xs):\n    use(x)", ["a()", "b()"]),
        # nested unpacking of literal pairs
        ("for k, (x, y) in ((1, (a(), b())), (2, (c(), b()))):\n    use(x)", ["a()", "c()"]),
        ("for x in reversed([a(), b()]):\n    use(x)", ["a()", "b()"]),
        ("for i, x in reversed(list(enumerate(xs))):\n    use(x)", None),
        ("for x, v in reversed(((a(), 1), (b(), 2))):\n    use(x)", ["a()", "b()"]),
        # the index of enumerate, an unknown iterable, or a list extended by something unknown: unknown
        ("for x, v in enumerate([a(), b()]):\n    use(x)", None),
        ("for x in xs:\n    use(x)", None),
        ("out = [a()]\nout.extend(xs)\nfor x in out:\n    use(x)", None),
        # a list rebound in the function is not the literal any more
        ("out = [a()]\nout = g(out)\nfor x in out:\n    use(x)", None),
    ],
)
def test_loop_target_values(body, expected):
    assert values_of_x(body) == expected
