"""The sizing arithmetic the transformer skill teaches, checked against the numbers it quotes."""

import json
import math

import pytest

from sharpedges.calculators import chinchilla, format_bytes, kv_cache_bytes, parse_count


def test_seed_example_is_512_kib_per_token():
    # 32 layers x 32 heads x 128 head_dim x 2 bytes (fp16) x 2 (K and V)
    estimate = kv_cache_bytes(32, 32, 128, seq_len=1, batch=1, dtype="fp16")
    assert estimate.bytes == 32 * 32 * 128 * 2 * 2 == 512 * 1024
    assert estimate.human == "512 KiB (512 KiB per token)"


def test_cache_grows_linearly_in_sequence_and_batch_and_shrinks_with_gqa():
    one = kv_cache_bytes(32, 32, 128).bytes
    assert kv_cache_bytes(32, 32, 128, seq_len=4096, batch=8).bytes == one * 4096 * 8
    assert kv_cache_bytes(32, 8, 128).bytes == one // 4  # 8 KV heads shared by 32 query heads
    assert kv_cache_bytes(32, 32, 128, dtype="float32").bytes == 2 * one


def test_sub_byte_cache_is_exact():
    assert kv_cache_bytes(1, 1, 1, dtype="int4").bytes == 1  # 2 values x 4 bits
    assert kv_cache_bytes(1, 1, 3, dtype="int4").bytes == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layers": 0}, "layers must be a positive integer"),
        ({"head_dim": 1.5}, "head_dim must be a positive integer"),
        ({"batch": True}, "batch must be a positive integer"),
        ({"dtype": "float64x"}, "unknown dtype 'float64x'"),
    ],
)
def test_kv_cache_refuses_bad_arguments(kwargs, message):
    arguments = {"layers": 2, "kv_heads": 2, "head_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        kv_cache_bytes(**arguments)


def test_chinchilla_70b_matches_the_paper():
    # Hoffmann et al. 2022 trained Chinchilla, 70B parameters, on 1.4T tokens.
    for estimate in (chinchilla(params=70e9), chinchilla(tokens=1.4e12), chinchilla(flops=6 * 70e9 * 1.4e12)):
        assert math.isclose(estimate.params, 70e9)
        assert math.isclose(estimate.tokens, 1.4e12)
        assert math.isclose(estimate.flops, 5.88e23)
    assert chinchilla(params=70e9).human == "70B parameters, 1.4T tokens, 5.88e+23 FLOPs"


@pytest.mark.parametrize("kwargs", [{}, {"params": 1e9, "tokens": 2e10}, {"flops": -1.0}, {"params": float("nan")}])
def test_chinchilla_needs_exactly_one_positive_number(kwargs):
    with pytest.raises(ValueError):
        chinchilla(**kwargs)


def test_number_formats():
    assert parse_count("7B") == 7e9
    assert parse_count("1.4t") == 1.4e12
    assert parse_count("5_000") == 5000
    with pytest.raises(ValueError, match="not a number"):
        parse_count("seven")
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**40) == "3 TiB"


def test_cli_prints_human_and_json(run_cli):
    text = run_cli("calc", "kv-cache", "--layers", "32", "--kv-heads", "32", "--head-dim", "128")
    assert (text.returncode, text.stdout) == (0, "512 KiB (512 KiB per token)\n")
    data = run_cli("calc", "chinchilla", "--params", "7B", "--format", "json")
    assert data.returncode == 0
    assert json.loads(data.stdout)["tokens"] == 140e9


def test_cli_errors_exit_2(run_cli):
    assert run_cli("calc", "kv-cache", "--layers", "0", "--kv-heads", "1", "--head-dim", "1").returncode == 2
    both = run_cli("calc", "chinchilla", "--params", "7B", "--tokens", "1T")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.parametrize(
    "text, value",
    [("128k", 128_000), ("1M", 1_000_000), ("7B", 7e9), ("1.4T", 1.4e12), ("4_096", 4096), ("2e3", 2000), (32, 32)],
)
def test_counts_take_suffixes_of_1000(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["", "k", "7X", "1e400", "nan", "inf"])
def test_counts_refuse_what_is_not_a_finite_number(text):
    with pytest.raises(ValueError):
        parse_count(text)


def test_cli_sizes_take_suffixes(run_cli):
    suffixed = run_cli(
        "calc",
        "kv-cache",
        "--layers",
        "32",
        "--kv-heads",
        "8",
        "--head-dim",
        "128",
        "--seq-len",
        "128k",
        "--format",
        "json",
    )
    plain = run_cli(
        "calc",
        "kv-cache",
        "--layers",
        "32",
        "--kv-heads",
        "8",
        "--head-dim",
        "128",
        "--seq-len",
        "128000",
        "--format",
        "json",
    )
    assert suffixed.returncode == 0 and json.loads(suffixed.stdout) == json.loads(plain.stdout)
    tokens = json.loads(run_cli("calc", "chinchilla", "--tokens", "1M", "--format", "json").stdout)
    assert tokens["params"] == 50_000
    fraction = run_cli("calc", "kv-cache", "--layers", "1.5", "--kv-heads", "1", "--head-dim", "1")
    assert fraction.returncode == 2 and "--layers: value must be a positive whole number, got '1.5'" in fraction.stderr


def test_chinchilla_that_overflows_is_an_error_not_inf(run_cli):
    result = run_cli("calc", "chinchilla", "--params", "1e308", "--format", "json")
    assert result.returncode == 2 and "too large" in result.stderr and result.stdout == ""
