"""Masks padded with F.pad: slots in front of the keys (text an image attends to, read memories) keep the
core block's geometry, and slots padded after the keys are keys after every query (dalle-pytorch 0.0.52,
recurrent-memory-transformer 0.1.7)."""

from __future__ import annotations

from tests.helpers import findings


def lines(source: str) -> list[int]:
    return [d.line for d in findings("SHP202", source)]


CONV_KEEP_MASK = """
    import torch
    import torch.nn.functional as F
    from einops import rearrange

    def attend(q_img, k_img, img_seq_len, img_size, kernel_size, text_len):
        mask_value = -torch.finfo(q_img.dtype).max
        dots = torch.einsum("b i d, b i j d -> b i j", q_img, k_img)
        img_seq = torch.arange(img_seq_len)
        k_indices = rearrange(img_seq, "(h w) -> () () h w", h=img_size)
        k_indices = F.unfold(k_indices.float(), kernel_size)
        k_indices = rearrange(k_indices, "b j i -> b i j")
        mask = rearrange(img_seq, "i -> () i ()") <= k_indices
        mask = F.pad(mask, (text_len, 0), value=True)
        dots.masked_fill_(~mask, mask_value)
        return dots.softmax(dim=-1)
"""


def test_a_keep_mask_padded_with_prefix_keys_keeps_its_direction():
    """dalle-pytorch 0.0.52: `i <= key index` keeps the key positions after the query; the text columns
    padded in front do not change that."""
    assert lines(CONV_KEEP_MASK) == [15]
    # 0.0.53: the keep-mask is `>=` (keys at or before the query)
    assert lines(CONV_KEEP_MASK.replace('"i -> () i ()") <= k_indices', '"i -> () i ()") >= k_indices')) == []


MEMORY_SLOTS = """
    import torch
    import torch.nn.functional as F

    def attend(q, k, n, read, write):
        sim = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        causal = torch.ones((n, n), dtype=torch.bool).tril()
        causal = F.pad(causal, (read, write) * 2, value=True)
        sim = sim.masked_fill(~causal, -torch.finfo(sim.dtype).max)
        return sim.softmax(dim=-1)
"""


def test_slots_padded_after_the_keys_and_kept_are_the_future():
    """A tril keep-mask padded with True after the keys lets every token keep the slots packed after
    it (write memories that see the whole sequence)."""
    assert lines(MEMORY_SLOTS) == [9]
    [finding] = findings("SHP202", MEMORY_SLOTS)
    assert "keys padded after the sequence stay attendable for masked_fill" in finding.message
    assert finding.fix is None  # flipping the triangle would not help: the padding is what is wrong
    # padded after the keys with False: those slots are blocked, the mask stays causal
    assert lines(MEMORY_SLOTS.replace("(read, write) * 2, value=True", "(read, write) * 2, value=False")) == []
    # padded in front only: prefix slots, causal
    assert lines(MEMORY_SLOTS.replace("(read, write) * 2", "(read, 0, read, 0)")) == []
