"""Facts cross files: a file sees the summaries of the project modules it imports, a cached result
holds only while those summaries do, and the output is the same cold or warm, 1 or N processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sharpedges.engine import Engine
from sharpedges.runner import CheckOptions, run_check
from tests.helpers import write_package

MODEL = """import math
import torch

from .consts import NEG_INF


def attention(query, key, value, mask):
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.size(-1))
    scores = scores.masked_fill(mask == 0, NEG_INF)
    return torch.matmul(scores.softmax(dim=-1), value)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """pkg/model.py fills attention scores with NEG_INF, which pkg/consts.py binds to -1e9."""
    return write_package(tmp_path, {"consts.py": "NEG_INF = -1e9\n", "model.py": MODEL})


def findings(result) -> list[tuple[str, int, str]]:
    return [(Path(d.path).name, d.line, d.rule) for d in result.diagnostics]


def test_a_constant_bound_in_another_module_is_seen(project: Path):
    result = run_check(CheckOptions(paths=[str(project)], select=["SHP103"], use_cache=False, jobs=1))
    assert findings(result) == [("model.py", 9, "SHP103")]
    assert "-1e+09" in result.diagnostics[0].message


def test_editing_a_helper_changes_the_warm_result_of_its_importer(project: Path, tmp_path: Path, monkeypatch):
    cache = tmp_path / "cache"
    options = CheckOptions(paths=[str(project)], select=["SHP103"], cache_dir=str(cache), jobs=1)
    assert findings(run_check(options)) == [("model.py", 9, "SHP103")]
    checked: list[str] = []
    real_check = Engine.check

    def counting(self, path, data):
        checked.append(Path(path).name)
        return real_check(self, path, data)

    monkeypatch.setattr(Engine, "check", counting)
    assert findings(run_check(options)) == [("model.py", 9, "SHP103")] and checked == []  # all from the cache
    (project / "pkg" / "consts.py").write_text("NEG_INF = -65000.0  # within float16\n")
    assert findings(run_check(options)) == []
    assert sorted(checked) == ["consts.py", "model.py"]  # model.py itself is unchanged, its helper is not
    checked.clear()
    assert findings(run_check(options)) == [] and checked == []


def test_cross_file_results_are_identical_cold_warm_and_across_processes(project: Path, tmp_path: Path):
    for index in range(12):  # enough files for a process pool
        shutil.copy(project / "pkg" / "model.py", project / "pkg" / f"model_{index:02d}.py")
    runs = {}
    for name, jobs, cache in (
        ("cold-1", 1, None),
        ("cold-2", 2, None),
        ("warm-write", 2, tmp_path / "c"),
        ("warm-read", 2, tmp_path / "c"),
        ("warm-read-1", 1, tmp_path / "c"),
    ):
        result = run_check(
            CheckOptions(
                paths=[str(project)],
                select=["SHP103"],
                jobs=jobs,
                use_cache=cache is not None,
                cache_dir=str(cache) if cache else None,
            )
        )
        runs[name] = json.dumps([d.to_json() for d in result.diagnostics])
    assert len(json.loads(runs["cold-1"])) == 13
    assert len(set(runs.values())) == 1


def test_a_one_file_check_and_stdin_compute_their_imports_on_demand(project: Path, run_cli):
    one = run_cli("check", "--select", "SHP103", "--no-cache", "pkg/model.py", cwd=project)
    assert one.returncode == 1 and "pkg/model.py:9:44: SHP103" in one.stdout
    piped = run_cli("check", "--select", "SHP103", "--stdin-filename", "pkg/model.py", cwd=project, input=MODEL)
    assert piped.returncode == 1 and "pkg/model.py:9:44: SHP103" in piped.stdout


def test_modules_resolve_only_inside_the_project(project: Path, tmp_path: Path):
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    (outside / "consts.py").write_text("NEG_INF = -1e9\n")
    (project / "pkg" / "consts.py").unlink()
    (project / "pkg" / "consts.py").symlink_to(outside / "consts.py")
    result = run_check(
        CheckOptions(paths=[str(project / "pkg" / "model.py")], select=["SHP103"], use_cache=False, jobs=1)
    )
    assert findings(result) == []


HOOK = """import torch.nn.functional as F

from .hooks import ModelHook


class LayerSkipHook(ModelHook):
    def __init__(self, dropout: float):
        super().__init__()
        self.dropout = dropout

    def new_forward(self, module, hidden_states):
        return F.dropout(hidden_states, p=self.dropout)
"""


@pytest.mark.parametrize(
    "base, flagged",
    [
        ("class ModelHook:\n    def __init__(self):\n        self.fn_ref = None\n", False),  # diffusers' hook
        ("import torch\n\n\nclass Base(torch.nn.Module):\n    pass\n\n\nclass ModelHook(Base):\n    pass\n", True),
        ("from .deeper import Root\n\n\nclass ModelHook(Root):\n    pass\n", True),  # two files away
    ],
)
def test_whether_a_base_class_is_an_nn_module_is_read_from_its_own_file(tmp_path: Path, base: str, flagged: bool):
    write_package(
        tmp_path,
        {
            "deeper.py": "import torch.nn as nn\n\n\nclass Root(nn.Module):\n    pass\n",
            "hooks.py": base,
            "layer_skip.py": HOOK,
        },
    )
    result = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP701"], use_cache=False, jobs=1))
    assert findings(result) == ([("layer_skip.py", 12, "SHP701")] if flagged else [])


SCORE_HELPERS = """
def maybe_add_mask(scores, attn_mask=None):
    return scores if attn_mask is None else scores + attn_mask


def scaled(scores, factor):
    return scores * factor
"""

SCORES_THROUGH_HELPERS = """
from torch import nn

from .layers import maybe_add_mask, scaled


class Attention(nn.Module):
    def forward(self, q, k, v, attn_mask=None):
        attn = q @ k.transpose(-2, -1)
        attn = maybe_add_mask(attn, attn_mask)
        return attn.softmax(dim=-1) @ v


class ScaledAttention(nn.Module):
    def forward(self, q, k, v, factor):
        attn = scaled(q @ k.transpose(-2, -1), factor)
        return attn.softmax(dim=-1) @ v
"""


def test_scores_are_traced_through_a_function_of_another_module(tmp_path: Path):
    """timm's `attn = maybe_add_mask(attn, bias)`: the scores come back from the helper unscaled; a helper
    that multiplies them applies a factor this file cannot see, and the rule stays quiet there."""
    write_package(tmp_path, {"layers.py": SCORE_HELPERS, "model.py": SCORES_THROUGH_HELPERS})
    result = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP101"], use_cache=False, jobs=1))
    assert findings(result) == [("model.py", 11, "SHP101")]
    alone = run_check(CheckOptions(paths=[str(tmp_path / "pkg" / "model.py")], select=["SHP101"], use_cache=False))
    assert findings(alone) == [("model.py", 11, "SHP101")]


HEAD_HELPERS = """
def repeat_kv(x, n_rep):
    return x if n_rep == 1 else x.repeat(1, n_rep, 1, 1)


def interleave_kv(x, n_rep):
    return x.repeat_interleave(n_rep, dim=1)
"""

HEADS_THROUGH_HELPERS = """
import torch.nn.functional as F
from torch import nn

from .kv import interleave_kv, repeat_kv


class Attention(nn.Module):
    def __init__(self, n_heads, n_kv_heads):
        super().__init__()
        self.n_rep = n_heads // n_kv_heads

    def forward(self, q, k, v):
        k = repeat_kv(k, self.n_rep)
        v = interleave_kv(v, self.n_rep)
        return F.scaled_dot_product_attention(q, k, v)


class MultiQuery(nn.Module):
    def __init__(self, n_heads):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, repeat_kv(k, self.n_heads), repeat_kv(v, self.n_heads))
"""


def test_a_helper_of_another_module_that_tiles_heads_is_flagged_where_it_gets_the_group_size(tmp_path: Path):
    """`repeat_kv` in one file repeats by whatever count it is given; the file that passes it the group
    size is where the heads come out in tile order. One KV head repeated to every query head (MQA) is
    the same in either order, and stays quiet."""
    write_package(tmp_path, {"kv.py": HEAD_HELPERS, "model.py": HEADS_THROUGH_HELPERS})
    result = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP602"], use_cache=False, jobs=1))
    assert findings(result) == [("model.py", 14, "SHP602")]
    assert "repeat(...) in repeat_kv()" in result.diagnostics[0].message
    alone = run_check(CheckOptions(paths=[str(tmp_path / "pkg" / "model.py")], select=["SHP602"], use_cache=False))
    assert findings(alone) == [("model.py", 14, "SHP602")]


HALF_MODEL = """
import math
import torch
from torch import nn


class Attention(nn.Module):
    def forward(self, q, k, v):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        return torch.softmax(scores, dim=-1) @ v


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention()

    def forward(self, q, k, v):
        return self.attn(q, k, v)
"""

HALF_SCRIPT = """
import torch
from .model import GPT


def load():
    model = GPT()
    model.to("cuda", {dtype})
    return model
"""


@pytest.mark.parametrize(("dtype", "flagged"), [("torch.float16", True), ("torch.bfloat16", False)])
def test_a_model_cast_to_half_in_the_file_next_to_it_runs_its_eager_softmax_in_half(
    tmp_path: Path, dtype: str, flagged: bool
):
    """`GPT` is cast to float16 in generate.py; its child `Attention` in model.py runs its softmax on
    float16 scores. The one-file check of model.py reads generate.py's summary too; bfloat16 keeps
    float32's range, and stays quiet."""
    write_package(tmp_path, {"model.py": HALF_MODEL, "generate.py": HALF_SCRIPT.format(dtype=dtype)})
    expected = [("model.py", 10, "SHP105")] if flagged else []
    result = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP105"], use_cache=False, jobs=1))
    assert findings(result) == expected
    alone = run_check(CheckOptions(paths=[str(tmp_path / "pkg" / "model.py")], select=["SHP105"], use_cache=False))
    assert findings(alone) == expected


def test_editing_the_file_that_casts_a_model_changes_the_warm_result_of_the_model(tmp_path: Path):
    write_package(tmp_path, {"model.py": HALF_MODEL, "generate.py": HALF_SCRIPT.format(dtype="torch.float16")})
    options = CheckOptions(paths=[str(tmp_path)], select=["SHP105"], cache_dir=str(tmp_path / "cache"), jobs=1)
    assert findings(run_check(options)) == [("model.py", 10, "SHP105")]
    (tmp_path / "pkg" / "generate.py").write_text(HALF_SCRIPT.format(dtype="torch.bfloat16"))
    assert findings(run_check(options)) == []
    (tmp_path / "pkg" / "generate.py").unlink()
    (tmp_path / "pkg" / "serve.py").write_text(HALF_SCRIPT.format(dtype="torch.half"))
    assert findings(run_check(options)) == [("model.py", 10, "SHP105")]


SOFTMAX_HELPERS = """
import torch
import torch.nn.functional as F


def softmax(x, dim, onnx_trace=False):
    if onnx_trace:
        return F.softmax(x.float(), dim=dim)
    return F.softmax(x, dim=dim, dtype=torch.float32)
"""

SOFTMAX_THROUGH_A_MODULE = """
import torch
from torch import nn

from pkg import utils


class Attention(nn.Module):
    def forward(self, q, k, v):
        weights = torch.bmm(q, k.transpose(1, 2))
        probs = utils.softmax(weights, dim=-1)
        return torch.bmm(probs, v)
"""


def test_a_softmax_run_by_a_function_of_another_module_is_an_attention_softmax(tmp_path: Path):
    """fairseq's `utils.softmax(attn_weights, dim=-1)`: the module's function returns the softmax of its
    first argument along `dim`, so the unscaled product reaching it is SHP101; the function upcasts to
    float32, so the model cast to half next to it is no SHP105."""
    script = HALF_SCRIPT.replace("GPT", "Attention").format(dtype="torch.float16")
    write_package(tmp_path, {"utils.py": SOFTMAX_HELPERS, "model.py": SOFTMAX_THROUGH_A_MODULE, "run.py": script})
    options = CheckOptions(paths=[str(tmp_path)], select=["SHP101", "SHP105"], use_cache=False, jobs=1)
    result = run_check(options)
    assert findings(result) == [("model.py", 11, "SHP101")]
    alone = CheckOptions(paths=[str(tmp_path / "pkg" / "model.py")], select=["SHP101", "SHP105"], use_cache=False)
    assert findings(run_check(alone)) == [("model.py", 11, "SHP101")]


ATTENTION_FUNCTIONS = """
import torch.nn.functional as F


def attention(q, k, v, dropout_p=0.0):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def gated_attention(q, k, v, dropout_p=0.0, training=False):
    if training:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    return F.scaled_dot_product_attention(q, k, v)


def padded_attention(q, k, v, mask=None, dropout_p=0.0):
    if mask is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
"""

DROPOUT_THROUGH_A_FUNCTION = """
from torch import nn

from .ops import attention, gated_attention, padded_attention


class Attention(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, q, k, v):
        out = gated_attention(q, k, v, dropout_p=self.p, training=self.training)
        out = out + padded_attention(q, k, v, None, dropout_p=self.p)
        return out + attention(q, k, v, dropout_p=self.p)
"""


def test_a_dropout_handed_to_a_kernel_by_a_function_of_another_module_must_be_gated(tmp_path: Path):
    """`attention(q, k, v, dropout_p=self.p)` reaches SDPA's dropout in ops.py, which cannot see
    `self.training`; a function that runs the dropping kernel only in a branch on a training flag chose
    when it drops, and one that branches on anything else (a padding mask, as transformers'
    `_flash_attention_forward` does) drops in eval on every branch."""
    write_package(tmp_path, {"ops.py": ATTENTION_FUNCTIONS, "model.py": DROPOUT_THROUGH_A_FUNCTION})
    result = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP701"], use_cache=False, jobs=1))
    assert [(name, line) for name, line, _ in findings(result)] == [("model.py", 14), ("model.py", 15)]
    assert [diagnostic.column for diagnostic in result.diagnostics] == [63, 51]  # at self.p
    assert "dropout_p reaches the attention kernel in eval too" in result.diagnostics[0].message


ROTATION_HELPERS = """
import torch


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
"""

TABLES_FOR_AN_IMPORTED_ROTATION = """
import torch
from torch import nn

from .rope import apply_rotary_pos_emb


class RotaryEmbedding(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, dim, 2).float() / dim), persistent=False)

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq
        emb = {table}
        return emb.cos(), emb.sin()


class Attention(nn.Module):
    def forward(self, q, k, cos, sin):
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q @ k.transpose(-2, -1)
"""


@pytest.mark.parametrize(
    ("table", "flagged"),
    [("freqs.repeat_interleave(2, dim=-1)", True), ("torch.cat((freqs, freqs), dim=-1)", False)],
)
def test_a_table_is_checked_against_the_rotation_of_a_function_of_another_module(
    tmp_path: Path, table: str, flagged: bool
):
    """rope.py's `apply_rotary_pos_emb` pairs channel i with i + d/2 (through `rotate_half`): an
    interleaved table in model.py rotates the wrong pairs, a half-split one is right."""
    write_package(
        tmp_path, {"rope.py": ROTATION_HELPERS, "model.py": TABLES_FOR_AN_IMPORTED_ROTATION.format(table=table)}
    )
    result = run_check(CheckOptions(paths=[str(tmp_path)], select=["SHP603"], use_cache=False, jobs=1))
    assert findings(result) == ([("model.py", 21, "SHP603")] if flagged else [])  # the imported rotation


def test_a_neighbour_that_starts_casting_to_half_changes_the_warm_result(tmp_path: Path):
    """run.py first mentions no half precision, so its summary is never read; that it mentions none is a
    dependency of model.py's cached result, and editing run.py to cast the model checks model.py again
    (the folder's list of files is the same)."""
    quiet = HALF_SCRIPT.replace('model.to("cuda", {dtype})', 'model.to("cuda")')
    write_package(tmp_path, {"model.py": HALF_MODEL, "run.py": quiet})
    options = CheckOptions(paths=[str(tmp_path)], select=["SHP105"], cache_dir=str(tmp_path / "cache"), jobs=1)
    assert findings(run_check(options)) == []
    (tmp_path / "pkg" / "run.py").write_text(HALF_SCRIPT.format(dtype="torch.half"))
    assert findings(run_check(options)) == [("model.py", 10, "SHP105")]


RESAMPLER = """
import torch
from torch import nn


class PerceiverAttention(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x, latents):
        x = self.norm_media(x)
        latents = self.norm_latents(latents)
        return self.to_out(torch.cat((x, latents), dim=-2)[:, -latents.shape[-2] :])


class PerceiverResampler(nn.Module):
    def __init__(self, dim, depth, num_latents=64):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList([PerceiverAttention(dim) for _ in range(depth)])

    def forward(self, x):
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn in self.layers:
            latents = attn(x, latents) + latents
        return latents
"""

RESAMPLER_USER = """
from torch import nn

from .resampler import PerceiverResampler


class Model(nn.Module):
    def __init__(self, dim, depth):
        super().__init__()
        self.resampler = PerceiverResampler(dim, depth)
        self.norm = nn.LayerNorm(dim)

    def forward(self, media):
        return self.norm(self.resampler(media))
"""


def test_a_prenorm_stack_that_nobody_in_sight_norms_is_reported_where_it_returns_its_stream(tmp_path: Path):
    """flamingo-pytorch 0.0.5's `PerceiverResampler`: the blocks norm the stream they read (the second
    argument of the attention), and the module returns the raw stream. No module of this file or its
    folder builds it, so nobody applies the final norm its pre-norm stack needs. Once a module of the
    folder names it, the contract may be kept there, and the stack is left alone."""
    write_package(tmp_path, {"resampler.py": RESAMPLER})
    options = CheckOptions(paths=[str(tmp_path / "pkg" / "resampler.py")], select=["SHP302"], use_cache=False)
    result = run_check(options)
    assert findings(result) == [("resampler.py", 29, "SHP302")]
    assert "the pre-norm stack `self.layers` is returned with no final norm" in result.diagnostics[0].message
    (tmp_path / "pkg" / "model.py").write_text(RESAMPLER_USER)
    assert findings(run_check(options)) == []


def test_a_folder_too_large_to_read_leaves_the_stack_to_whoever_builds_it(tmp_path: Path):
    """Past `MAX_NEIGHBOURS` modules the folder is not read for mentions, so nobody building the stack is
    unknown, not shown: no finding. The folder's listing is a dependency of the answer."""
    from sharpedges.analysis.project import MAX_NEIGHBOURS

    write_package(tmp_path, {"resampler.py": RESAMPLER})
    for index in range(MAX_NEIGHBOURS + 1):
        (tmp_path / "pkg" / f"part_{index}.py").write_text("")
    options = CheckOptions(paths=[str(tmp_path / "pkg" / "resampler.py")], select=["SHP302"], use_cache=False)
    assert findings(run_check(options)) == []


STAR_IMPORTED_ATTENTION = """from .llama import *


def attention_forward(self, hidden_states, attention_mask=None):
    Q, K, V = self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states)
    if HAS_FLASH_ATTENTION and attention_mask is None:
        A = flash_attn_func(Q, K, V, causal=True)
    else:
        A = scaled_dot_product_attention(Q, K, V, attn_mask=attention_mask, is_causal=False)
    return A
"""
KERNEL_IMPORTS = """from flash_attn import flash_attn_func
from torch.nn.functional import scaled_dot_product_attention
"""


def test_a_star_import_binds_the_kernels_its_module_imports_and_a_warm_run_follows_it(tmp_path: Path):
    """unsloth's qwen3.py takes `scaled_dot_product_attention` from `from .llama import *`: the kernel is
    known through llama.py's imports, and when llama.py stops importing it the importer is checked again."""
    root = write_package(tmp_path, {"llama.py": KERNEL_IMPORTS, "qwen3.py": STAR_IMPORTED_ATTENTION})
    options = CheckOptions(paths=[str(root)], select=["SHP201"], cache_dir=str(tmp_path / "cache"), jobs=1)
    assert findings(run_check(options)) == [("qwen3.py", 9, "SHP201")]
    assert findings(run_check(options)) == [("qwen3.py", 9, "SHP201")]  # warm
    (root / "pkg" / "llama.py").write_text(
        "from flash_attn import flash_attn_func\nfrom .kernels import scaled_dot_product_attention\n"
    )
    assert findings(run_check(options)) == []


def test_star_imports_are_read_for_unbound_names_only_and_not_through_a_package_index(tmp_path: Path, monkeypatch):
    """A builtin (`len`) is never looked up through `from .other import *`, and a package index that stars
    in more modules than MAX_STAR_SOURCES (transformers' models/__init__.py stars in 546) is not read
    through: neither summarises modules for nothing. qwen3.py still finds its kernel through llama.py."""
    from sharpedges.analysis.project import MAX_STAR_SOURCES
    from sharpedges.project import SummaryStore

    stars = [f"m{i}" for i in range(MAX_STAR_SOURCES + 1)]
    builtins_only = "from .other import *\nimport torch.nn.functional as F\n\n\ndef f(q, k, v):\n"
    builtins_only += "    n = len(q)\n    return F.scaled_dot_product_attention(q, k, v, is_causal=n > 1)\n"
    index = "".join(f"from .{name} import *\n" for name in stars) + "\n\ndef f(q, k, v):\n"
    index += "    return scaled_dot_product_attention(q, k, v, is_causal=True)\n"
    files = {name + ".py": f"{KERNEL_IMPORTS}# {name}\n" for name in [*stars, "other"]}  # each its own summary
    root = write_package(
        tmp_path,
        {
            **files,
            "llama.py": KERNEL_IMPORTS,
            "qwen3.py": STAR_IMPORTED_ATTENTION,
            "index.py": index,
            "f.py": builtins_only,
        },
    )
    summarised = []
    compute = SummaryStore._compute
    monkeypatch.setattr(
        SummaryStore, "_compute", lambda self, k, path, d: summarised.append(path.name) or compute(self, k, path, d)
    )
    result = run_check(CheckOptions(paths=[str(root)], select=["SHP201"], use_cache=False, jobs=1))
    assert findings(result) == [("qwen3.py", 9, "SHP201")]
    assert "llama.py" in summarised, summarised
    assert not {"other.py", *(name + ".py" for name in stars)} & set(summarised)
