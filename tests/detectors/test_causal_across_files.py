"""SHP201 across files: an attention module with no causal mask in `attention.py`, built by a GPT in
`gpt.py` of the same folder. The file that defines it cannot tell it is causal; the file that builds
it says so (masks.causal_instances, read back by masks.causal_by_importers)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.detectors.modules import UNMASKED_SDPA_ATTENTION
from tests.helpers import write_package

ATTENTION = UNMASKED_SDPA_ATTENTION + textwrap.dedent("""
    class Block(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.attn = SelfAttention(dim, heads)

        def forward(self, x):
            return x + self.attn(x)
""")

GPT = """
    from torch import nn
    from .attention import Block

    class {name}(nn.Module):
        def __init__(self, vocab, dim, heads, depth):
            super().__init__()
            self.emb = nn.Embedding(vocab, dim)
            self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
            self.lm_head = nn.Linear(dim, vocab)

        def forward(self, idx):
            x = self.emb(idx)
            for block in self.blocks:
                x = block(x)
            return self.lm_head(x)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_package(tmp_path, {"attention.py": ATTENTION, "gpt.py": GPT.format(name="GPT")})


def test_an_attention_built_by_a_causal_model_of_another_file(run_cli, project: Path):
    result = run_cli("check", "pkg", "--select", "SHP201", "--no-cache", cwd=project)
    assert result.stdout.splitlines()[0].startswith("pkg/attention.py:15:"), result.stdout
    assert "scaled_dot_product_attention in a causal model gets no causal mask" in result.stdout
    one_file = run_cli("check", "pkg/attention.py", "--select", "SHP201", "--no-cache", cwd=project)
    assert one_file.stdout.splitlines()[0].startswith("pkg/attention.py:15:"), one_file.stdout


def test_a_package_checked_from_outside_its_project_still_sees_its_folder(run_cli, project: Path, tmp_path_factory):
    """The run's roots are the checked paths' projects, not only the config of the working directory."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "pyproject.toml").write_text("[tool.sharpedges]\n")
    result = run_cli("check", str(project / "pkg"), "--select", "SHP201", "--no-cache", cwd=elsewhere)
    assert "attention.py:15:" in result.stdout, result.stdout


def test_an_encoder_of_another_file_is_quiet(run_cli, tmp_path: Path):
    write_package(tmp_path, {"attention.py": ATTENTION, "vit.py": GPT.format(name="VisionEncoder")})
    result = run_cli("check", "pkg", "--select", "SHP201", "--no-cache", cwd=tmp_path)
    assert result.returncode == 0, result.stdout


def test_warm_result_follows_the_importer_becoming_causal(run_cli, tmp_path: Path):
    write_package(tmp_path, {"attention.py": ATTENTION, "model.py": GPT.format(name="VisionEncoder")})
    assert run_cli("check", "pkg", "--select", "SHP201", cwd=tmp_path).returncode == 0
    model = tmp_path / "pkg" / "model.py"
    model.write_text(model.read_text().replace("VisionEncoder", "GPT"))
    warm = run_cli("check", "pkg", "--select", "SHP201", cwd=tmp_path)
    assert "Found 1 problem" in warm.stdout, warm.stdout + warm.stderr
