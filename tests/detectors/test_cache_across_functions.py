"""SHP204 across the function boundary: the cache is concatenated in `forward()` while SDPA runs with
`is_causal=True` in another method of the class, or in a function of another project module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import findings, mutate, write_package

METHOD = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)

        def _attend(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

        def forward(self, x, past=None):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            if past is not None:
                k = torch.cat([past[0], k], dim=-2)
                v = torch.cat([past[1], v], dim=-2)
            return self._attend(q, k, v), (k, v)
"""


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(source).splitlines(), 1) if text in line)


def shp204(source: str) -> list[int]:
    return [d.line for d in findings("SHP204", source)]


def test_cache_concatenated_by_the_caller_of_the_kernel_method_is_found():
    assert shp204(METHOD) == [line_of(METHOD, "F.scaled_dot_product_attention(q, k, v, is_causal=True)")]


def test_kernel_method_called_only_without_a_cache_is_quiet():
    gated = mutate(
        METHOD,
        "            return self._attend(q, k, v), (k, v)",
        "            if past is None:\n                return self._attend(q, k, v), (k, v)\n"
        "            return F.scaled_dot_product_attention(q, k, v), (k, v)",
    )
    assert shp204(gated) == []


APPENDING_HELPER = """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.cache = None

        def _append(self, k, v):
            if self.cache is not None:
                k = torch.cat([self.cache[0], k], dim=-2)
                v = torch.cat([self.cache[1], v], dim=-2)
            self.cache = (k, v)
            return k, v

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            k, v = self._append(k, v)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
"""


def test_keys_returned_by_a_helper_that_concatenates_the_cache_are_found():
    assert shp204(APPENDING_HELPER) == [line_of(APPENDING_HELPER, "is_causal=True")]


def test_only_the_returned_element_built_from_the_cache_counts():
    # the helper hands back the cache's keys second; the caller's first name is the fresh projection
    swapped = mutate(APPENDING_HELPER, "return k, v", "return x, k")
    swapped = mutate(swapped, "def _append(self, k, v):", "def _append(self, k, v, x=None):")
    swapped = mutate(swapped, "k, v = self._append(k, v)", "k, _ = self._append(k, v, k)")
    assert shp204(swapped) == []
    assert shp204(mutate(swapped, "k, _ = self._append(k, v, k)", "_, k = self._append(k, v, k)")) == [
        line_of(swapped, "is_causal=True")
    ]


def test_kernel_method_given_keys_without_a_cache_is_quiet():
    no_cache = mutate(METHOD, "k = torch.cat([past[0], k], dim=-2)", "k = k * 1.0")
    no_cache = mutate(no_cache, "v = torch.cat([past[1], v], dim=-2)", "v = v * 1.0")
    assert shp204(no_cache) == []


# -- across files: the kernel in kernels.py, the cache in model.py ----------------------------------------
KERNELS = """
    import torch.nn.functional as F

    def causal_attention(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
"""
MODEL = """
    import torch
    from torch import nn

    from pkg.kernels import causal_attention

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)

        def forward(self, x, past=None):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            if past is not None:
                k = torch.cat([past[0], k], dim=-2)
                v = torch.cat([past[1], v], dim=-2)
            return causal_attention(q, k, v), (k, v)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_package(tmp_path, {"kernels.py": KERNELS, "model.py": MODEL})


def test_cache_handed_to_a_causal_kernel_in_another_module_is_found(run_cli, project: Path):
    result = run_cli("check", "pkg", "--select", "SHP204", "--no-cache", cwd=project)
    line = line_of(MODEL, "return causal_attention(q, k, v)")
    assert result.stdout.splitlines()[0].startswith(f"pkg/model.py:{line}:")
    assert "SHP204 `is_causal=True` with keys from a KV cache" in result.stdout
    assert "Found 1 problem in 1 of 3 files." in result.stdout


def test_kernel_module_whose_causal_flag_is_gated_is_quiet(run_cli, project: Path):
    kernels = project / "pkg" / "kernels.py"
    kernels.write_text(kernels.read_text().replace("is_causal=True", "is_causal=q.shape[-2] == k.shape[-2]"))
    result = run_cli("check", "pkg", "--select", "SHP204", "--no-cache", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr


def test_warm_result_follows_an_edit_of_the_kernel_module(run_cli, project: Path):
    cold = run_cli("check", "pkg", "--select", "SHP204", cwd=project)
    assert "Found 1 problem" in cold.stdout
    kernels = project / "pkg" / "kernels.py"
    kernels.write_text(kernels.read_text().replace("is_causal=True", "is_causal=False"))
    warm = run_cli("check", "pkg", "--select", "SHP204", cwd=project)
    assert warm.returncode == 0, warm.stdout + warm.stderr


FLAG = mutate(
    mutate(
        METHOD, "def __init__(self, dim):", "def __init__(self, dim, causal=False):\n            self.causal = causal"
    ),
    "is_causal=True",
    "is_causal=self.causal",
)


def test_a_causal_flag_fixed_when_the_module_is_built_is_causal_for_those_instances():
    [finding] = findings("SHP204", FLAG)
    assert finding.line == line_of(FLAG, "is_causal=self.causal")
    assert finding.message.startswith("`is_causal=self.causal` is True for causal instances")


@pytest.mark.parametrize(
    "old, new",
    [
        ("is_causal=self.causal", "is_causal=self.causal and q.shape[-2] == k.shape[-2]"),  # gated per call
        (
            "return self._attend(q, k, v), (k, v)",
            "self.causal = False\n            return self._attend(q, k, v), (k, v)",
        ),
    ],
)
def test_a_flag_gated_per_call_or_set_outside_the_constructor_is_not_a_construction_flag(old, new):
    assert findings("SHP204", mutate(FLAG, old, new)) == []


# -- the other way round: the kernel module is imported by the module that keeps the cache --------------
ATTEND = """
    import torch.nn.functional as F
    from torch import nn

    class Attend(nn.Module):
        def __init__(self, causal=False):
            super().__init__()
            self.causal = causal

        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
"""
LAYER = """
    import torch
    from torch import nn

    from .attend import Attend

    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.attend = Attend(causal=True)

        def forward(self, x, past=None):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            if past is not None:
                k = torch.cat([past[0], k], dim=-2)
                v = torch.cat([past[1], v], dim=-2)
            return self.attend(q, k, v), (k, v)
"""


@pytest.fixture
def importer_project(tmp_path: Path) -> Path:
    return write_package(tmp_path, {"attend.py": ATTEND, "layer.py": LAYER})


def test_keys_a_module_of_the_same_folder_builds_from_a_cache_reach_the_kernel_it_imports(run_cli, importer_project):
    result = run_cli("check", "pkg", "--select", "SHP204", "--no-cache", cwd=importer_project)
    line = line_of(ATTEND, "F.scaled_dot_product_attention(")
    assert result.stdout.splitlines()[0].startswith(f"pkg/attend.py:{line}:"), result.stdout
    assert "Found 1 problem in 1 of 3 files." in result.stdout
    one_file = run_cli("check", "pkg/attend.py", "--select", "SHP204", "--no-cache", cwd=importer_project)
    assert one_file.stdout.splitlines()[0].startswith(f"pkg/attend.py:{line}:"), one_file.stdout


def test_warm_result_of_the_kernel_module_follows_an_edit_of_its_importer(run_cli, importer_project):
    assert "Found 1 problem" in run_cli("check", "pkg", "--select", "SHP204", cwd=importer_project).stdout
    layer = importer_project / "pkg" / "layer.py"
    layer.write_text(layer.read_text().replace("torch.cat([past[0], k], dim=-2)", "k * 1.0"))
    warm = run_cli("check", "pkg", "--select", "SHP204", cwd=importer_project)
    assert warm.returncode == 0, warm.stdout + warm.stderr


def test_warm_result_of_the_kernel_module_follows_a_new_importer(run_cli, importer_project):
    layer = importer_project / "pkg" / "layer.py"
    text = layer.read_text()
    layer.unlink()
    assert run_cli("check", "pkg/attend.py", "--select", "SHP204", cwd=importer_project).returncode == 0
    (importer_project / "pkg" / "decoder.py").write_text(text)
    warm = run_cli("check", "pkg/attend.py", "--select", "SHP204", cwd=importer_project)
    assert "Found 1 problem" in warm.stdout, warm.stdout + warm.stderr
