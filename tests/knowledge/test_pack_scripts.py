"""The helper scripts shipped in the claude-skill pack compute what the project's own tools compute."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sharpedges.calculators import kv_cache_bytes
from sharpedges.knowledge.packs import SCRIPTS_DIR

TRANSFORMER_SCRIPTS = SCRIPTS_DIR / "transformer-architecture"


def run_script(name: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TRANSFORMER_SCRIPTS / name), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.mark.parametrize(
    "layers, kv_heads, head_dim, seq_len, batch, dtype",
    [(32, 32, 128, 4096, 1, "float16"), (80, 8, 128, 32768, 4, "bfloat16"), (28, 4, 128, 1000, 3, "int4")],
)
def test_kv_cache_script_agrees_with_sharpedges_calc(layers, kv_heads, head_dim, seq_len, batch, dtype):
    result = run_script(
        "kv_cache.py",
        "--layers",
        str(layers),
        "--kv-heads",
        str(kv_heads),
        "--head-dim",
        str(head_dim),
        "--seq-len",
        str(seq_len),
        "--batch",
        str(batch),
        "--dtype",
        dtype,
    )
    assert result.returncode == 0, result.stderr
    expected = kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch, dtype).bytes
    assert result.stdout.startswith(f"{expected} bytes")


def test_kv_cache_script_refuses_a_non_positive_size():
    result = run_script("kv_cache.py", "--layers", "0", "--kv-heads", "8", "--head-dim", "128")
    assert result.returncode == 2 and "positive" in result.stderr


def test_sdpa_equivalence_passes_the_reference_and_catches_a_top_left_causal_mask(tmp_path):
    pytest.importorskip("torch")
    assert run_script("sdpa_equivalence.py").returncode == 0
    (tmp_path / "user_attention.py").write_text(
        textwrap.dedent("""
        import torch.nn.functional as F

        def attention(q, k, v, allowed):
            # the bug: is_causal whenever there is more than one query, even after a cache
            return F.scaled_dot_product_attention(q, k, v, is_causal=q.size(-2) > 1,
                                                  attn_mask=None if q.size(-2) > 1 else allowed)
    """)
    )
    result = run_script("sdpa_equivalence.py", "user_attention:attention", cwd=tmp_path)
    assert result.returncode == 1
    assert "MISMATCH 3 new tokens after 7 cached (bottom-right)" in result.stdout
