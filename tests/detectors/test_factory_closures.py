"""A closure returned by a factory is summarised like any function: an attribute or a local bound to a
call of the factory holds it, and a call of that attribute maps its arguments through the closure's
summary (torchtune 0.3.1: `self._attention_call = _sdpa_or_flex_attention()`, then
`self._attention_call(..., dropout_p=self.attn_dropout)` drops attention weights in eval)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import findings, mutate, write_package

FACTORY = """
    from torch import nn

    def _sdpa_or_flex_attention():
        def _attention_call(q, k, v, mask, dropout_p, is_causal):
            return nn.functional.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
            )

        return _attention_call
"""
MODULE = """
    class MultiHeadAttention(nn.Module):
        def __init__(self, attn_dropout=0.0):
            super().__init__()
            self.attn_dropout = attn_dropout
            self._attention_call = _sdpa_or_flex_attention()

        def forward(self, q, k, v, mask=None):
            output = self._attention_call(
                q,
                k,
                v,
                mask=mask,
                dropout_p=self.attn_dropout,
                is_causal=mask is None,
            )
            return output
"""
SAME_FILE = FACTORY + MODULE


def shp701(source: str) -> list[tuple[int, str]]:
    return [(d.line, d.message) for d in findings("SHP701", source)]


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(source).splitlines(), 1) if text in line)


def test_dropout_through_a_factory_closure_held_by_an_attribute_is_found():
    [(line, message)] = shp701(SAME_FILE)
    assert line == line_of(SAME_FILE, "dropout_p=self.attn_dropout,")
    assert message.startswith("dropout_p reaches the attention kernel in eval too")


def test_positional_arguments_and_a_local_closure_are_mapped_too():
    local = mutate(
        SAME_FILE,
        """            output = self._attention_call(
                q,
                k,
                v,
                mask=mask,
                dropout_p=self.attn_dropout,
                is_causal=mask is None,
            )""",
        """            attend = _sdpa_or_flex_attention()
            output = attend(q, k, v, mask, self.attn_dropout, True)""",
    )
    assert [line for line, _ in shp701(local)] == [line_of(local, "output = attend(")]


BRANCHED_FACTORY = """
    from torch import nn
    from torch.nn.attention.flex_attention import flex_attention

    def _sdpa_or_flex_attention():
        if FLEX:

            def _attention_call(q, k, v, mask, dropout_p, is_causal):
                return flex_attention(q, k, v, block_mask=mask)

        else:

            def _attention_call(q, k, v, mask, dropout_p, is_causal):
                return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)

        return _attention_call
"""


def test_one_closure_per_branch_of_the_factory_is_followed():
    branched = BRANCHED_FACTORY + MODULE
    assert [line for line, _ in shp701(branched)] == [line_of(branched, "dropout_p=self.attn_dropout,")]


@pytest.mark.parametrize(
    "old, new",
    [
        ("dropout_p=self.attn_dropout,", "dropout_p=self.attn_dropout if self.training else 0.0,"),
        (
            "            output = self._attention_call(",
            "            p = self.attn_dropout\n            if not self.training:\n                p = 0.0\n"
            "            output = self._attention_call(",
        ),
        ("dropout_p=dropout_p, is_causal", "dropout_p=0.0, is_causal"),  # the closure fixes the probability
    ],
    ids=["conditional-expression", "if-not-training", "closure-with-constant-dropout"],
)
def test_gated_or_constant_dropout_is_quiet(old, new):
    source = mutate(SAME_FILE, old, new)
    if "p = 0.0" in new:
        source = mutate(source, "dropout_p=self.attn_dropout,", "dropout_p=p,")
    assert shp701(source) == []


def test_a_factory_returning_something_else_is_not_a_closure():
    source = mutate(SAME_FILE, "        return _attention_call\n", "        return nn.Identity()\n")
    assert shp701(source) == []


def test_a_method_wrapper_is_followed_the_same_way():
    method = """
        import torch.nn.functional as F
        from torch import nn

        class Attention(nn.Module):
            def __init__(self, p):
                super().__init__()
                self.p = p

            def _attend(self, q, k, v, dropout_p):
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)

            def forward(self, q, k, v):
                return self._attend(q, k, v, self.p)
    """
    assert [line for line, _ in shp701(method)] == [line_of(method, "return self._attend(")]
    assert (
        shp701(mutate(method, "self._attend(q, k, v, self.p)", "self._attend(q, k, v, self.p * self.training)")) == []
    )


def test_a_probability_the_caller_takes_as_a_parameter_is_left_to_its_caller():
    source = mutate(
        SAME_FILE, "def forward(self, q, k, v, mask=None):", "def forward(self, q, k, v, attn_dropout, mask=None):"
    )
    assert shp701(mutate(source, "dropout_p=self.attn_dropout,", "dropout_p=attn_dropout,")) == []


# -- across files: the factory in attention_utils.py, the module in attention.py -------------------------
@pytest.fixture
def project(tmp_path: Path) -> Path:
    imports = "from torch import nn\n\nfrom pkg.attention_utils import _sdpa_or_flex_attention\n\n"
    return write_package(tmp_path, {"attention_utils.py": FACTORY, "attention.py": imports + textwrap.dedent(MODULE)})


def test_a_factory_in_another_project_module_is_followed(run_cli, project: Path):
    result = run_cli("check", "pkg", "--select", "SHP701", "--no-cache", cwd=project)
    attention = (project / "pkg" / "attention.py").read_text()
    line = line_of(attention, "dropout_p=self.attn_dropout,")
    assert result.stdout.splitlines()[0].startswith(f"pkg/attention.py:{line}:")
    assert "SHP701 dropout_p reaches the attention kernel in eval too" in result.stdout
    assert "Found 1 problem in 1 of 3 files." in result.stdout


def test_a_project_factory_whose_closure_fixes_the_dropout_is_quiet(run_cli, project: Path):
    utils = project / "pkg" / "attention_utils.py"
    utils.write_text(utils.read_text().replace("dropout_p=dropout_p,", "dropout_p=0.0,"))
    result = run_cli("check", "pkg", "--select", "SHP701", "--no-cache", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_closure_a_base_class_of_the_file_holds_is_followed_from_the_subclass():
    split = SAME_FILE.replace(
        "        def forward(self, q, k, v, mask=None):",
        "    class CausalAttention(MultiHeadAttention):\n        def forward(self, q, k, v, mask=None):",
    )
    [(line, _)] = shp701(split)
    assert line == line_of(split, "dropout_p=self.attn_dropout,")
    # a base of another module may set the attribute too: nothing is said
    imported = "\n    from layers import Base" + split.replace(
        "class CausalAttention(MultiHeadAttention)", "class CausalAttention(Base)"
    ).replace("self._attention_call = _sdpa_or_flex_attention()", "pass")
    assert shp701(imported) == []
