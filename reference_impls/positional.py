"""Position information: RoPE, ALiBi, sinusoidal and learned positions.

RoPE angles are computed in at least fp32, from absolute positions, every call.
Nothing is stored in a buffer: ``model.to(torch.bfloat16)`` casts buffers, and a
bf16 angle table is off by whole radians past a few thousand positions
(gpt-neox #1003, transformers #25681).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# ---------------------------------------------------------------------------- RoPE


def rope_angles(
    rotary_dim: int, positions: Tensor, *, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotation angles, each (..., T, rotary_dim // 2), in ``dtype``.

    Pair i turns by ``position * base ** (-2i / rotary_dim)``. ``dtype`` below fp32 is
    refused: bf16 cannot even represent position 257 exactly.
    """
    assert rotary_dim % 2 == 0, "RoPE rotates channel pairs"
    if torch.finfo(dtype).bits < 32:
        raise ValueError(f"RoPE angles need at least fp32, got {dtype}")
    exponents = torch.arange(0, rotary_dim, 2, dtype=dtype, device=positions.device) / rotary_dim
    inv_freq = base ** (-exponents)  # (rotary_dim/2,)
    angles = positions.to(dtype)[..., None] * inv_freq  # (..., T, rotary_dim/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, *, interleaved: bool = False) -> Tensor:
    """Rotate the first ``2 * cos.size(-1)`` channels of x (..., T, D); pass the rest.

    Half-split layout (GPT-NeoX, HF Llama) pairs channel i with i + rotary_dim/2;
    interleaved layout (original Meta Llama, GPT-J) pairs 2i with 2i+1. Mixing the
    frequency layout of one with the pairing of the other is a silent bug. The
    rotation runs in the angles' precision; the result has x's dtype.
    """
    rotary_dim = 2 * cos.size(-1)
    assert rotary_dim <= x.size(-1), "rotary_dim exceeds head_dim"
    x_rot, x_pass = x[..., :rotary_dim].to(cos.dtype), x[..., rotary_dim:]
    if interleaved:
        x1, x2 = x_rot[..., 0::2], x_rot[..., 1::2]
    else:
        x1, x2 = x_rot[..., : rotary_dim // 2], x_rot[..., rotary_dim // 2 :]
    rotated_1 = x1 * cos - x2 * sin
    rotated_2 = x1 * sin + x2 * cos
    if interleaved:
        rotated = torch.stack((rotated_1, rotated_2), dim=-1).flatten(-2)
    else:
        rotated = torch.cat((rotated_1, rotated_2), dim=-1)
    return torch.cat((rotated.to(x.dtype), x_pass), dim=-1)


def interleaved_to_half_split(rotary_dim: int) -> Tensor:
    """Channel order that turns interleaved-RoPE weights into half-split ones.

    ``w_half = w_interleaved[perm]`` on each head's output rows of W_q and W_k
    (what transformers' ``convert_llama_weights_to_hf.py`` does with ``permute``).
    """
    assert rotary_dim % 2 == 0
    return torch.cat((torch.arange(0, rotary_dim, 2), torch.arange(1, rotary_dim, 2)))


class RotaryEmbedding(nn.Module):
    """RoPE for (B, H, T, head_dim) tensors at absolute ``positions`` (T,) or (B, T).

    ``rotary_dim`` < ``head_dim`` gives partial rotary (GPT-NeoX, Phi). Holds no
    parameters or buffers, so casting the model cannot lower the angle precision.
    """

    def __init__(
        self, head_dim: int, *, rotary_dim: int | None = None, base: float = 10000.0, interleaved: bool = False
    ):
        super().__init__()
        self.rotary_dim = head_dim if rotary_dim is None else rotary_dim
        assert self.rotary_dim % 2 == 0 and self.rotary_dim <= head_dim
        self.base, self.interleaved = base, interleaved

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        angle_dtype = torch.promote_types(x.dtype, torch.float32)
        cos, sin = rope_angles(self.rotary_dim, positions, base=self.base, dtype=angle_dtype)
        if positions.dim() == 2:  # per-sequence positions (B, T): broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        return apply_rope(x, cos, sin, interleaved=self.interleaved)


# --------------------------------------------------------------------------- ALiBi


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi head slopes (Press et al.), a geometric sequence starting at 2^(-8/n).

    For a head count that is not a power of two, take the slopes of the nearest
    lower power of two, then every other slope of the next power of two.
    """

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest != n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, q_positions: Tensor, kv_positions: Tensor) -> Tensor:
    """Additive bias (H, Sq, Sk): ``-slope * |q - k|``, a linear penalty on distance."""
    distance = (q_positions[:, None] - kv_positions[None, :]).abs()  # (Sq, Sk)
    return -slopes[:, None, None] * distance.to(slopes.dtype)


# ---------------------------------------------------------------- absolute positions


def sinusoidal_positions(n_positions: int, dim: int, *, base: float = 10000.0) -> Tensor:
    """Fixed sinusoidal embeddings (n_positions, dim), fp32: sin on even, cos on odd channels."""
    assert dim % 2 == 0
    positions = torch.arange(n_positions, dtype=torch.float32)[:, None]
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.empty(n_positions, dim)
    table[:, 0::2] = torch.sin(positions * inv_freq)
    table[:, 1::2] = torch.cos(positions * inv_freq)
    return table


class LearnedPositions(nn.Module):
    """Learned absolute position embeddings that refuse positions past their table.

    ``nn.Embedding`` raises an opaque IndexError on CPU and a device-side assert on
    CUDA; generating past the trained length deserves a clear message instead.
    """

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.max_positions = max_positions
        self.table = nn.Embedding(max_positions, dim)

    def forward(self, positions: Tensor) -> Tensor:
        # .max() syncs with the device; the clear error is worth it in a reference.
        if positions.numel() and int(positions.max()) >= self.max_positions:
            raise ValueError(f"position {int(positions.max())} is past the {self.max_positions} learned positions")
        return self.table(positions)
