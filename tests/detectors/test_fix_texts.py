"""Every fix a rule offers in words is code that runs: the code in each spec's `use_instead` and in the
messages its bad examples produce parses, and every in-place method it names exists on torch.Tensor.

A span in backticks is code unless it only names something (a keyword, `norm=`); code may be a
statement, a call argument (`mask=m, is_causal=True`), a method suffix (`.float()`) or a block header
(`with torch.autocast(...):`)."""

from __future__ import annotations

import ast
import keyword
import re

import pytest

from sharpedges.analysis.tensors import HAS_INPLACE_VARIANT, SHARED_OUT_OF_PLACE_METHODS, TENSOR_ONLY_METHODS
from sharpedges.registry import all_rules
from tests.helpers import findings

RULES = all_rules()
CODE_SPAN = re.compile(r"`([^`]+)`")
IN_PLACE_CALL = re.compile(r"\.([A-Za-z]\w*_)\(")


def fix_texts(code: str) -> list[str]:
    spec = RULES[code].spec
    return [spec.use_instead, *(d.message for source in spec.examples.bad for d in findings(code, source))]


def names_only(span: str) -> bool:
    """`while`, `norm=`, `out=`: a mention of a keyword or an argument name, not code to write."""
    return keyword.iskeyword(span) or re.fullmatch(r"\w+=", span) is not None


def parses(span: str) -> bool:
    contexts = (span, f"f({span})", f"x{span}", f"{span}\n    pass", f"{span}:\n    pass")
    for text in contexts:
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        return True
    return False


@pytest.mark.parametrize("code", sorted(RULES))
def test_fix_and_use_instead_code_parses(code):
    spans = [span for text in fix_texts(code) for span in CODE_SPAN.findall(text) if not names_only(span)]
    broken = [span for span in spans if not parses(span)]
    assert broken == [], f"{code}: not valid code: {broken}"


@pytest.mark.parametrize("code", sorted(RULES))
def test_fix_texts_name_only_in_place_methods_torch_has(code):
    torch = pytest.importorskip("torch")  # the methods are looked up on torch.Tensor itself
    named = {name for text in fix_texts(code) for name in IN_PLACE_CALL.findall(text)}
    missing = sorted(name for name in named if not hasattr(torch.Tensor, name))
    assert missing == [], f"{code} suggests in-place methods torch.Tensor does not have: {missing}"


def test_the_in_place_table_agrees_with_torch():
    """HAS_INPLACE_VARIANT is what SHP702 offers as `name_`: exactly the out-of-place methods whose twin exists."""
    torch = pytest.importorskip("torch")
    out_of_place = TENSOR_ONLY_METHODS | SHARED_OUT_OF_PLACE_METHODS
    assert out_of_place >= HAS_INPLACE_VARIANT
    assert sorted(name for name in HAS_INPLACE_VARIANT if not hasattr(torch.Tensor, f"{name}_")) == []
    assert sorted(name for name in out_of_place - HAS_INPLACE_VARIANT if hasattr(torch.Tensor, f"{name}_")) == []


def test_a_discarded_cast_offers_no_in_place_method_and_no_assignment_to_a_call():
    source = (
        "import torch\n\ndef f(n, layer):\n    x = torch.zeros(n)\n    x.half()\n    x.cuda()\n"
        "    torch.zeros(n).clamp(0, 1)\n    torch.ones(n).to(layer.weight.dtype)\n"
    )
    messages = [d.message for d in findings("SHP702", source)]
    assert len(messages) == 4, messages
    assert not any("half_" in m or "cuda_" in m for m in messages)
    assert "`x = x.half(...)`" in messages[0]
    assert all(" = torch." not in m for m in messages[2:]), messages
    assert "use the returned tensor" in messages[2] and "`torch.zeros(n).clamp_(...)`" in messages[2]
