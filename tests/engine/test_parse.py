"""The engine's parse: libcst's tree, without libcst re-validating what its own parser just built."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from sharpedges.engine import MAIN_STACK_BUDGET, STACK_PER_LEVEL, nesting_bound, parse_module

REPOSITORY = Path(__file__).resolve().parents[2]
SOURCES = {
    "engine": (REPOSITORY / "sharpedges" / "engine.py").read_bytes(),
    "reference attention": (REPOSITORY / "reference_impls" / "attention.py").read_bytes(),
    "crlf and tabs": b"class A:\r\n\tdef f(self, x):\r\n\t\treturn (x  @ x).softmax(-1)  # c\r\n",
    # a file that might nest deeper than the main stack allows (it counts every operator) parses on a thread
    "long (parsed on its own thread)": b"x = 1\n" * (MAIN_STACK_BUDGET // STACK_PER_LEVEL + 1),
}


@pytest.mark.parametrize("name", SOURCES)
def test_the_tree_is_libcsts_tree(name):
    data = SOURCES[name]
    assert (nesting_bound(data) * STACK_PER_LEVEL > MAIN_STACK_BUDGET) == name.startswith("long")
    ours, theirs = parse_module(data), cst.parse_module(data)
    assert ours.deep_equals(theirs) and ours.bytes == data


def test_parsing_skips_validation_and_nothing_else_does(monkeypatch):
    validated: list[str] = []
    original = cst.SimpleWhitespace._validate

    def counting(node):
        validated.append(node.value)
        original(node)

    monkeypatch.setattr(cst.SimpleWhitespace, "_validate", counting)
    parse_module(b"x = 1\n")
    assert validated == []
    cst.parse_module(b"x = 1\n")
    assert validated  # libcst's own parse validates each node: the engine's is what skips it


@pytest.mark.parametrize("data", [b"x = 1\n", b"def f(:\n", SOURCES["long (parsed on its own thread)"]])
def test_nodes_built_after_a_parse_are_validated(data):
    try:
        parse_module(data)
    except cst.ParserSyntaxError:
        pass
    with pytest.raises(cst.CSTValidationError):
        cst.SimpleWhitespace("not whitespace")


def test_overlapping_parses_leave_validation_on_once_all_are_done():
    """Two threads' parses that overlap, the first one finishing first (an editor's server may run
    checks on several threads)."""
    from sharpedges.engine import _trusting_the_parser

    first, second = _trusting_the_parser(), _trusting_the_parser()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    cst.SimpleWhitespace("not whitespace")  # the second parse still runs: nothing is validated
    second.__exit__(None, None, None)
    with pytest.raises(cst.CSTValidationError):
        cst.SimpleWhitespace("not whitespace")
