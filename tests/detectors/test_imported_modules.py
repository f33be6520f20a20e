"""A mask handed to an instance of a module class that another file of the project defines:
`self.attend = Attend(...)`, then `self.attend(q, k, v, mask=mask)`. The summary of `attend.py` says in
which convention its `forward` reads the mask, so SHP202 / SHP203 judge the mask where it is built, as
they do when the class is in the same file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers import findings, mutate, write_package

ATTEND = """
    import torch
    from torch import nn


    class Attend(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, q, k, v, mask=None):
            sim = (q @ k.transpose(-2, -1)) * self.scale
            if mask is not None:
                sim = sim.masked_fill(~mask, float("-inf"))
            return sim.softmax(dim=-1) @ v
"""
MODEL = """
    import torch
    from torch import nn

    from pkg.attend import Attend


    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.attend = Attend(dim**-0.5)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            n = x.shape[-2]
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            return self.attend(q, k, v, mask=mask)
"""
INVERTED = "the causal mask is inverted for masked_fill in `Attend`"


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(textwrap.dedent(source).splitlines(), 1) if text in line)


def same_file(attend: str = ATTEND, model: str = MODEL) -> str:
    """Both classes in one module, as the importer would read if `Attend` were its own."""
    return textwrap.dedent(attend) + textwrap.dedent(model).replace("from pkg.attend import Attend\n", "")


def checked(run_cli, root: Path, *args: str) -> list[str]:
    """The concise finding lines of one `sharpedges check` run from the project root."""
    result = run_cli("check", *args, cwd=root)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return [line for line in result.stdout.splitlines() if ": SHP" in line]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_package(tmp_path, {"attend.py": ATTEND, "model.py": MODEL})


def test_a_mask_inverted_for_an_imported_module_is_found_where_it_is_handed_over(run_cli, project: Path):
    [finding] = checked(run_cli, project, "pkg", "--select", "SHP202", "--no-cache")
    assert finding.startswith(f"pkg/model.py:{line_of(MODEL, 'return self.attend(q, k, v, mask=mask)')}:")
    assert INVERTED in finding
    [alone] = checked(run_cli, project, "pkg/model.py", "--select", "SHP202", "--no-cache")  # a one-file check
    assert alone == finding


def test_the_same_mask_is_inverted_when_the_class_is_in_the_same_file():
    source = same_file()
    [finding] = findings("SHP202", source)
    assert finding.line == line_of(source, 'sim = sim.masked_fill(~mask, float("-inf"))')
    assert finding.message.startswith("the causal mask is inverted for masked_fill")


def test_a_module_that_blocks_where_the_mask_is_true_takes_that_mask_as_it_is(run_cli, project: Path):
    attend = project / "pkg" / "attend.py"
    attend.write_text(attend.read_text().replace("masked_fill(~mask,", "masked_fill(mask,"))
    assert checked(run_cli, project, "pkg", "--select", "SHP202", "--no-cache") == []
    assert findings("SHP202", same_file(mutate(ATTEND, "masked_fill(~mask,", "masked_fill(mask,"))) == []


def test_warm_result_follows_an_edit_of_the_imported_module(run_cli, project: Path):
    assert len(checked(run_cli, project, "pkg", "--select", "SHP202")) == 1
    attend = project / "pkg" / "attend.py"
    attend.write_text(attend.read_text().replace("masked_fill(~mask,", "masked_fill(mask,"))
    assert checked(run_cli, project, "pkg", "--select", "SHP202") == []
    attend.write_text(textwrap.dedent(ATTEND))
    [finding] = checked(run_cli, project, "pkg/model.py", "--select", "SHP202")
    assert INVERTED in finding


def test_a_module_that_hands_the_mask_to_sdpa_in_a_helper_method_reads_it_true_keep(run_cli, project: Path):
    attend = project / "pkg" / "attend.py"
    attend.write_text(
        textwrap.dedent(
            """
            import torch.nn.functional as F
            from torch import nn


            class Attend(nn.Module):
                def __init__(self, scale):
                    super().__init__()
                    self.scale = scale

                def flash(self, q, k, v, mask):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)

                def forward(self, q, k, v, mask=None):
                    return self.flash(q, k, v, mask=mask)
            """
        )
    )
    [finding] = checked(run_cli, project, "pkg", "--select", "SHP202", "--no-cache")
    assert "the causal mask is inverted for scaled_dot_product_attention in `Attend`" in finding


# -- through the importer's own modules: the mask is judged where it is built -----------------------------
STACK = """
    import torch
    from torch import nn

    from pkg.attend import Attend


    class Attention(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.attend = Attend(dim**-0.5)

        def forward(self, x, mask=None):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return self.attend(q, k, v, mask=mask)


    class Transformer(nn.Module):
        def __init__(self, dim, depth, causal=True):
            super().__init__()
            self.causal = causal
            self.layers = nn.ModuleList([Attention(dim) for _ in range(depth)])

        def forward(self, x):
            n = x.shape[-2]
            mask = None
            if self.causal:
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
            for layer in self.layers:
                x = layer(x, mask=mask) + x
            return x
"""


def test_a_mask_handed_through_a_stack_of_layers_is_judged_on_the_path_that_builds_it(tmp_path: Path, run_cli):
    root = write_package(tmp_path, {"attend.py": ATTEND, "model.py": STACK})
    [finding] = checked(run_cli, root, "pkg", "--select", "SHP202", "--no-cache")
    assert finding.startswith(f"pkg/model.py:{line_of(STACK, 'mask = torch.ones(n, n')}:")
    fixed = mutate(STACK, ".triu(1)", ".tril()")
    (root / "pkg" / "model.py").write_text(textwrap.dedent(fixed))
    assert checked(run_cli, root, "pkg", "--select", "SHP202", "--no-cache") == []


# -- padding masks (SHP203), and a rearrange that keeps only what the entries mark -----------------------
PADDING = """
    from torch import nn

    from pkg.attend import Attend


    class Encoder(nn.Module):
        def __init__(self, dim, pad_id=0):
            super().__init__()
            self.pad_id = pad_id
            self.embed = nn.Embedding(100, dim)
            self.attend = Attend(dim**-0.5)

        def forward(self, input_ids):
            x = self.embed(input_ids)
            padding = input_ids == self.pad_id
            return self.attend(x, x, x, mask=padding)
"""
REARRANGED = mutate(
    ATTEND,
    "            if mask is not None:\n",
    "            if mask is not None:\n                mask = rearrange(mask, 'b j -> b 1 1 j')\n",
).replace("from torch import nn\n", "from einops import rearrange\n    from torch import nn\n")


def test_a_padding_mask_of_the_other_convention_is_found_through_a_rearrange(tmp_path: Path, run_cli):
    root = write_package(tmp_path, {"attend.py": REARRANGED, "model.py": PADDING})
    [finding] = checked(run_cli, root, "pkg", "--select", "SHP203", "--no-cache")
    assert finding.startswith(f"pkg/model.py:{line_of(PADDING, 'return self.attend(')}:")
    assert "but masked_fill in `Attend` attends where" in finding


def test_a_rearrange_that_moves_the_axes_leaves_a_triangle_unjudged(tmp_path: Path, run_cli):
    root = write_package(tmp_path, {"attend.py": REARRANGED, "model.py": MODEL})
    assert checked(run_cli, root, "pkg", "--select", "SHP202", "--no-cache") == []


# -- kernel arguments: a dropout probability handed to a module that runs SDPA (SHP701) -------------------
KERNEL_MODULE = """
    import torch.nn.functional as F
    from torch import nn


    class Attend(nn.Module):
        def forward(self, q, k, v, dropout_p=0.0):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
"""
DROPOUT = """
    from torch import nn

    from pkg.attend import Attend


    class Attention(nn.Module):
        def __init__(self, dim, dropout=0.1):
            super().__init__()
            self.qkv = nn.Linear(dim, 3 * dim)
            self.dropout = dropout
            self.attend = Attend()

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return self.attend(q, k, v, dropout_p=self.dropout)
"""


def test_dropout_handed_to_a_module_that_runs_the_kernel_is_found_in_either_file(tmp_path: Path, run_cli):
    root = write_package(tmp_path, {"attend.py": KERNEL_MODULE, "model.py": DROPOUT})
    [finding] = checked(run_cli, root, "pkg", "--select", "SHP701", "--no-cache")
    assert finding.startswith(f"pkg/model.py:{line_of(DROPOUT, 'return self.attend(')}:")
    source = same_file(KERNEL_MODULE, DROPOUT)
    [local] = findings("SHP701", source)
    assert local.line == line_of(source, "return self.attend(")
    gated = mutate(DROPOUT, "dropout_p=self.dropout)", "dropout_p=self.dropout if self.training else 0.0)")
    (root / "pkg" / "model.py").write_text(textwrap.dedent(gated))
    assert checked(run_cli, root, "pkg", "--select", "SHP701", "--no-cache") == []
