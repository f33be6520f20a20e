"""Cached decoding equals a full forward for every cache kind; overflow raises."""

import pytest

torch = pytest.importorskip("torch")

from sharpedges.reference_impls.block import DecoderConfig, TinyDecoder  # noqa: E402
from sharpedges.reference_impls.kv_cache import (  # noqa: E402
    CacheOverflowError,
    PagedKVCache,
    SlidingWindowCache,
    StaticKVCache,
)

BATCH, SEQ, PREFILL, N_KV = 2, 13, 7, 2


@pytest.mark.parametrize("use_sdpa", [True, False], ids=["sdpa", "eager"])
@pytest.mark.parametrize("kind", ["static", "sliding", "paged"])
def test_cached_decode_equals_full_forward(kind, use_sdpa):
    # window 5 < prefill 7: the sliding cache must serve a prefill longer than its ring.
    window = 5 if kind == "sliding" else None
    cfg = DecoderConfig(vocab_size=64, d_model=32, n_heads=4, n_kv_heads=N_KV, window=window, use_sdpa=use_sdpa)
    torch.manual_seed(0)
    model = TinyDecoder(cfg).double().eval()
    idx = torch.randint(0, 64, (BATCH, SEQ))
    caches = model.new_caches(kind, BATCH, SEQ, block_size=4)
    steps = [model(idx[:, :PREFILL], caches=caches)]
    steps += [model(idx[:, t : t + 1], caches=caches) for t in range(PREFILL, SEQ)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(idx))
    assert caches[0].length == SEQ


def test_static_cache_overflow_raises():
    cache = StaticKVCache(1, 1, 4, 2)
    cache.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    with pytest.raises(CacheOverflowError):
        cache.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert cache.length == 3  # a refused write leaves the cache as it was


def test_static_cache_returns_only_written_slots():
    cache = StaticKVCache(1, 1, 8, 2)
    keys, _, positions = cache.update(torch.ones(1, 1, 3, 2), torch.ones(1, 1, 3, 2))
    assert keys.shape == (1, 1, 3, 2) and positions.tolist() == [0, 1, 2]


def test_paged_cache_overflow_raises_when_the_pool_is_empty():
    cache = PagedKVCache(2, 1, 2, block_size=2, num_blocks=3)
    cache.update(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2))  # one block per sequence
    with pytest.raises(CacheOverflowError):
        cache.update(torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))  # needs 2, 1 left


def test_paged_cache_gathers_what_was_written():
    cache = PagedKVCache(2, 1, 1, block_size=2, num_blocks=6)
    values = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 1, 5, 1)
    cache.update(values[:, :, :3], values[:, :, :3])
    keys, _, positions = cache.update(values[:, :, 3:], values[:, :, 3:])
    assert torch.equal(keys, values) and positions.tolist() == list(range(5))
    assert len(set(cache.block_table[:, :3].flatten().tolist())) == 6  # no block shared


def test_sliding_window_ring_holds_absolute_positions_of_the_last_window():
    cache = SlidingWindowCache(1, 1, 4, 1)
    for t in range(6):
        cache.update(torch.full((1, 1, 1, 1), float(t)), torch.zeros(1, 1, 1, 1))
    assert sorted(cache.positions.tolist()) == [2, 3, 4, 5]
    assert torch.equal(cache.k.flatten(), cache.positions.float())  # key t sits beside position t
