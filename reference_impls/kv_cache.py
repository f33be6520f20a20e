"""KV caches for one attention layer: static, sliding-window ring, paged.

Every cache has the same face: ``update(k, v)`` takes the new keys and values
(B, H_kv, T, D), already rotated by RoPE, and returns the keys and values to attend
over (B, H_kv, S, D) with their absolute positions (S,); -1 marks an empty slot, which
``attention.mask_from_positions`` never lets a query see. ``length`` counts the
tokens written so far, so the next token's absolute position is ``length``.
Memory is bounded in all three: none grows by ``torch.cat`` on a stored tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor


class CacheOverflowError(RuntimeError):
    """More tokens than the cache was sized for."""


class StaticKVCache:
    """Preallocated (B, H_kv, max_len, D) buffers and an explicit length counter."""

    def __init__(self, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int, *, dtype=None, device=None):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        start, end = self.length, self.length + k.size(-2)
        if end > self.max_len:
            raise CacheOverflowError(f"{end} tokens do not fit a cache of {self.max_len}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        self.length = end
        # Only the written prefix: the zeros past it are not keys.
        return self.k[:, :, :end], self.v[:, :, :end], torch.arange(end, device=k.device)


class SlidingWindowCache:
    """Ring buffer of the last ``window`` post-RoPE keys and values with their positions.

    Token at absolute position p lives in slot ``p % window``. The new chunk is
    attended together with the ring before it is written, so a prefill longer than
    the window still sees, for every query, the ``window`` keys it needs. Never
    overflows: old tokens are overwritten, their positions with them.
    """

    def __init__(self, batch_size: int, n_kv_heads: int, window: int, head_dim: int, *, dtype=None, device=None):
        shape = (batch_size, n_kv_heads, window, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.positions = torch.full((window,), -1, dtype=torch.long, device=device)
        self.window = window
        self.length = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n_new = k.size(-2)
        new_positions = torch.arange(self.length, self.length + n_new, device=k.device)
        keys = torch.cat((self.k, k), dim=-2)  # (B, H_kv, window + T, D), a temporary
        values = torch.cat((self.v, v), dim=-2)
        positions = torch.cat((self.positions, new_positions))
        kept = slice(max(0, n_new - self.window), n_new)  # only the last `window` survive
        slots = new_positions[kept] % self.window
        self.k[:, :, slots] = k[:, :, kept]
        self.v[:, :, slots] = v[:, :, kept]
        self.positions[slots] = new_positions[kept]
        self.length += n_new
        return keys, values, positions


class PagedKVCache:
    """Fixed-size blocks from a shared pool, addressed through per-sequence block tables.

    Reference semantics of vLLM-style paging: token at position p of sequence b is in
    block ``block_table[b, p // block_size]`` at offset ``p % block_size``. Attention
    gathers the blocks back into a dense tensor; a paged kernel would read them in place.
    All sequences of the batch advance together here.
    """

    def __init__(
        self,
        batch_size: int,
        n_kv_heads: int,
        head_dim: int,
        *,
        block_size: int,
        num_blocks: int,
        dtype=None,
        device=None,
    ):
        shape = (num_blocks, n_kv_heads, block_size, head_dim)
        self.k_pool = torch.zeros(shape, dtype=dtype, device=device)
        self.v_pool = torch.zeros(shape, dtype=dtype, device=device)
        self.block_table = torch.full((batch_size, num_blocks), -1, dtype=torch.long, device=device)
        self.free_blocks = list(range(num_blocks))
        self.block_size = block_size
        self.length = 0

    def _blocks_in_use(self, n_tokens: int) -> int:
        return -(-n_tokens // self.block_size)  # ceil

    def _allocate(self, end: int) -> None:
        batch_size = self.block_table.size(0)
        first_new, n_needed = self._blocks_in_use(self.length), self._blocks_in_use(end)
        missing = (n_needed - first_new) * batch_size
        if missing > len(self.free_blocks):
            raise CacheOverflowError(f"need {missing} more blocks, {len(self.free_blocks)} free")
        for b in range(batch_size):
            for logical in range(first_new, n_needed):
                self.block_table[b, logical] = self.free_blocks.pop()

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        end = self.length + k.size(-2)
        self._allocate(end)
        new_positions = torch.arange(self.length, end, device=k.device)
        blocks = self.block_table[:, new_positions // self.block_size]  # (B, T)
        offsets = new_positions % self.block_size  # (T,)
        # Pool indexed [block, :, offset] has shape (B, T, H_kv, D): move heads after time.
        self.k_pool[blocks, :, offsets] = k.transpose(1, 2)
        self.v_pool[blocks, :, offsets] = v.transpose(1, 2)
        self.length = end
        return self._gather(self.k_pool), self._gather(self.v_pool), torch.arange(end, device=k.device)

    def _gather(self, pool: Tensor) -> Tensor:
        n_blocks = self._blocks_in_use(self.length)
        blocks = pool[self.block_table[:, :n_blocks]]  # (B, n_blocks, H_kv, block_size, D)
        batch_size, _, n_kv_heads, _, head_dim = blocks.shape
        dense = blocks.transpose(1, 2).reshape(batch_size, n_kv_heads, n_blocks * self.block_size, head_dim)
        return dense[:, :, : self.length]  # (B, H_kv, length, D)
