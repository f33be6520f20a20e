"""Padding masks built from sequence lengths (`arange(T) < lengths[:, None]`): True at the real tokens
below the lengths, True at the padding at or past them. Built in the file or returned by a helper of
another module (NeMo's get_mask_from_lengths, ESPnet's make_pad_mask, fairseq's lengths_to_padding_mask),
and filled before a softmax of scores of any form."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharpedges.runner import CheckOptions, run_check
from tests.helpers import findings, write_package


def lines(source: str) -> list[int]:
    return [d.line for d in findings("SHP203", source)]


KEEP_FILLED = """
    import torch

    def attend(q, k, v, lengths):
        ids = torch.arange(k.shape[1], device=k.device)
        mask = {mask}
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        scores = scores.masked_fill({filled}, float("-inf"))
        return scores.softmax(dim=-1) @ v
"""


@pytest.mark.parametrize(
    ("mask", "filled", "flagged"),
    [
        ("ids < lengths.unsqueeze(1)", "mask[:, None, :]", True),  # True at the real tokens, filled
        ("ids < lengths.unsqueeze(1)", "~mask[:, None, :]", False),
        ("ids[None, :] >= lengths[:, None]", "mask[:, None, :]", False),  # True at the padding, filled
        ("ids[None, :] >= lengths[:, None]", "~mask[:, None, :]", True),
        ("lengths.view(-1, 1) > ids", "mask[:, None, :]", True),  # lengths first: the same meaning
        ("ids < lengths", "mask[:, None, :]", False),  # lengths not laid out one per row: unknown
        ("ids < ids.view(-1, 1)", "mask", False),  # positions against positions: a triangle, not padding
        ("ids < (ids + 1).view(-1, 1)", "mask", False),
    ],
)
def test_a_mask_below_the_lengths_is_true_at_the_real_tokens(mask: str, filled: str, flagged: bool):
    source = KEEP_FILLED.format(mask=mask, filled=filled)
    assert lines(source) == ([8] if flagged else [])


def test_a_length_mask_outside_attention_says_nothing_of_its_prefix():
    """transformers' logits processors fill the prompt positions of `input_ids`: positions below a per-row
    length there are the prompt, which is what the fill means to overwrite."""
    source = """
    import torch

    def ignore_prompt(input_ids, prompt_length, vocab_size):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return input_ids.masked_fill(positions[None, :] < prompt_length[:, None], vocab_size)
    """
    assert lines(source) == []


DISTANCE_ATTENTION = """
    import torch
    from torch import nn

    class AlignmentEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.softmax = nn.Softmax(dim=3)

        def forward(self, queries, keys, lengths):
            ids = torch.arange(keys.shape[2], device=keys.device)
            mask = ids[None, :] < lengths[:, None]
            attn = (queries[:, :, :, None] - keys[:, :, None]) ** 2
            attn = -0.0005 * attn.sum(1, keepdim=True)
            attn.data.masked_fill_({filled}[:, None, None, :], -float("inf"))
            return self.softmax(attn)
"""


def test_scores_of_another_form_filled_before_a_softmax_are_masked_scores():
    """NeMo's aligner: a Gaussian distance between queries and keys, not QK^T, filled in place through
    `.data` and normalised by an `nn.Softmax` module."""
    assert lines(DISTANCE_ATTENTION.format(filled="mask")) == [15]
    assert lines(DISTANCE_ATTENTION.format(filled="~mask")) == []


HELPERS = """
import torch


def get_mask_from_lengths(lengths, x=None):
    if x is None:
        max_len = int(lengths.max())
    else:
        max_len = x.shape[-1]
    if lengths is None:
        return torch.ones(max_len, dtype=torch.bool)
    ids = torch.arange(0, max_len, device=lengths.device)
    return ids < lengths.unsqueeze(1)


def make_pad_mask(lengths):
    bs, maxlen = int(lengths.size(0)), int(lengths.max())
    seq_range_expand = torch.arange(0, maxlen).unsqueeze(0).expand(bs, maxlen)
    seq_length_expand = seq_range_expand.new(lengths).unsqueeze(-1)
    return seq_range_expand >= seq_length_expand


def invert(mask):
    return ~mask
"""

IMPORTER = """
import torch
from torch import nn

from . import utils
from .utils import get_mask_from_lengths, invert, make_pad_mask


class Attention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x, lengths):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        scores = scores.masked_fill(get_mask_from_lengths(lengths)[:, None, :], float("-inf"))
        scores = scores.masked_fill(utils.make_pad_mask(lengths)[:, None, :], float("-inf"))
        scores = scores.masked_fill(invert(make_pad_mask(lengths))[:, None, :], float("-inf"))
        return scores.softmax(dim=-1) @ v
"""


def test_a_padding_mask_returned_by_a_function_of_another_module_keeps_its_meaning(tmp_path: Path):
    """The keep mask of `get_mask_from_lengths` filled as if it marked the padding is flagged where it is
    filled, in a folder check and in a check of the one file; `make_pad_mask`'s is right as it is. A
    helper whose result depends on what it is handed (`invert`) says nothing of its own."""
    write_package(tmp_path, {"utils.py": HELPERS, "model.py": IMPORTER})
    expected = [("model.py", 17, "SHP203")]
    folder = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP203"], use_cache=False, jobs=1))
    assert [(Path(d.path).name, d.line, d.rule) for d in folder.diagnostics] == expected
    assert "True at the real tokens" in folder.diagnostics[0].message
    alone = run_check(CheckOptions(paths=[str(tmp_path / "pkg" / "model.py")], select=["SHP203"], use_cache=False))
    assert [(Path(d.path).name, d.line, d.rule) for d in alone.diagnostics] == expected
