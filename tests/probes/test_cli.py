"""`sharpedges probe` driven as a user would: a factory module in the current directory, the real CLI
in a subprocess, JSON and concise output, exit codes 0, 1 and 2."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sharpedges.cli import main

REPO = Path(__file__).resolve().parents[2]
SDPA_SCRIPT = REPO / "skills" / "scripts" / "transformer-architecture" / "sdpa_equivalence.py"

TARGETS = """\
from models import TinyLM
from sharpedges.probes.reference import tiny_decoder


def clean():
    return TinyLM()


def inverted():
    return TinyLM("inverted_causal_mask")


def broken():
    raise RuntimeError("config file missing")


def not_a_model():
    return "gpt2"


class Chatty(TinyLM):
    def forward(self, input_ids, **kwargs):
        print("forward", tuple(input_ids.shape))
        return super().forward(input_ids, **kwargs)


def chatty():
    return Chatty()
"""


@pytest.fixture
def project(tmp_path):
    """tmp_path holds models.py (the test models) and targets.py (factories)."""
    shutil.copy(Path(__file__).with_name("models.py"), tmp_path / "models.py")
    (tmp_path / "targets.py").write_text(TARGETS)
    return tmp_path


def test_json_output_of_a_clean_and_a_buggy_model(project, run_cli):
    clean = run_cli("probe", "targets:clean", "--format", "json", cwd=project)
    assert clean.returncode == 0, clean.stderr
    probes = json.loads(clean.stdout)["probes"]
    assert [(p["name"], p["status"], p["rule"]) for p in probes] == [
        ("causal", "pass", "SHP201/SHP202"),
        ("eval-deterministic", "pass", "SHP701"),
        ("kv-cache-consistent", "pass", "SHP204/SHP401"),
        ("padding-invariant", "pass", "SHP203"),
        ("half-precision", "pass", "SHP103/SHP105/SHP601"),
        ("grad-flow", "pass", "SHP502"),
    ]
    assert probes[0]["edges"] == ["transformer-architecture#causal-mask", "transformer-architecture#mask-polarity"]
    assert probes[0]["measured"]["future_change_max_abs_diff"] == 0.0 and probes[0]["detail"]

    buggy = run_cli(
        "probe", "targets:inverted", "--probe", "causal", "--probe", "grad-flow", "--format", "json", cwd=project
    )
    assert buggy.returncode == 1, buggy.stderr
    assert [(p["name"], p["status"]) for p in json.loads(buggy.stdout)["probes"]] == [
        ("causal", "fail"),
        ("grad-flow", "pass"),
    ]


def test_concise_output_names_the_failing_probe_and_its_rules(project, run_cli):
    result = run_cli("probe", "targets:inverted", "--probe", "causal", cwd=project)
    assert result.returncode == 1
    first, summary = result.stdout.splitlines()
    assert first.startswith("causal  FAIL  SHP201/SHP202  changing tokens after position 7 moved the outputs")
    assert summary == "1 probes: 0 passed, 1 failed, 0 skipped"


def test_the_readme_example_runs_as_written(tmp_path, run_cli):
    section = (REPO / "README.md").read_text().split("## Runtime probes", 1)[1].split("\n## ", 1)[0]
    example = section.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()[-1]
    command = shlex.split(example.split("#", 1)[0])
    assert command == ["sharpedges", "probe", "sharpedges.probes.reference:tiny_decoder"]
    result = run_cli(*command[1:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "6 probes: 6 passed, 0 failed, 0 skipped"


@pytest.fixture
def in_project(project, monkeypatch):
    """Run the CLI's entry point in this process from `project` (a subprocess would import torch
    again), forgetting the modules it imported afterwards."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield main
    for name in ("targets", "models"):
        sys.modules.pop(name, None)


def test_what_the_model_prints_goes_to_stderr_and_json_stays_whole(in_project, capsys):
    assert in_project(["probe", "targets:chatty", "--probe", "causal", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [probe["status"] for probe in json.loads(out)["probes"]] == ["pass"]
    assert "forward (2, 16)" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["targets"], "'targets': expected MODULE:FACTORY, e.g. models.tiny:build_model"),
        (["nowhere:build"], "cannot import 'nowhere': ModuleNotFoundError: No module named 'nowhere'"),
        (["targets:missing"], "'targets' has no attribute 'missing'"),
        (["targets:broken"], "'targets:broken()' raised RuntimeError: config file missing"),
        (["targets:not_a_model"], "'targets:not_a_model()' returned str: expected a torch.nn.Module"),
        (["targets:clean", "--probe", "causality"], "unknown probe 'causality' (known: causal, eval-deterministic"),
        (["os:getcwd", "--root", "."], "'os': refused: a built-in module, not a file inside ."),
    ],
)
def test_usage_and_import_errors_exit_2_with_one_line(in_project, capsys, args, message):
    assert in_project(["probe", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"sharpedges: error: {message}") and err.count("\n") == 1, err


def test_root_refuses_a_module_linked_from_outside_before_running_it(tmp_path, run_cli):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "evil.py").write_text("open('ran', 'w').close()\ndef build():\n    return None\n")
    (root / "evil.py").symlink_to(outside / "evil.py")
    result = run_cli("probe", "evil:build", "--root", str(root), cwd=root)
    assert result.returncode == 2
    assert f"'evil': refused: {root / 'evil.py'} resolves through a symlink outside {root}" in result.stderr
    assert not (root / "ran").exists()


def test_without_torch_probe_says_so_in_one_line_and_check_still_runs(tmp_path):
    code = "import sys; sys.modules['torch'] = None\nfrom sharpedges.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    probe = subprocess.run(
        [sys.executable, "-c", code, "probe", "targets:clean"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 2
    assert probe.stderr == "sharpedges: error: `probe` needs torch: pip install 'sharpedges[torch]'\n"
    (tmp_path / "ok.py").write_text("x = 1\n")
    check = subprocess.run(
        [sys.executable, "-c", code, "check", "ok.py", "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no CUDA device exists")
def test_cuda_without_a_device_is_a_usage_error(in_project, capsys):
    assert in_project(["probe", "targets:clean", "--device", "cuda"]) == 2
    assert capsys.readouterr().err == "sharpedges: error: --device cuda: no CUDA device is available\n"


def test_help_names_every_probe(capsys):
    """The help lists the probes without importing torch, so it keeps its own list: keep it in step."""
    from sharpedges.probes import PROBES

    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    words = " ".join(capsys.readouterr().out.split())
    assert "default: all): " + ", ".join(PROBES) in words


def test_the_probe_modules_import_without_torch():
    """torch is imported where a probe runs, never when a probe module is imported: the package and the
    skill script load in an environment without torch (`import torch` made to fail), and the probe
    command then says in one line what it needs."""
    import subprocess

    modules = [path.stem for path in sorted((REPO / "sharpedges" / "probes").glob("*.py")) if path.stem != "__init__"]
    code = (
        "import sys, importlib, runpy; sys.modules['torch'] = None\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module('sharpedges.probes.' + name)\n"
        "import sharpedges.probes\n"
        f"runpy.run_path({str(SDPA_SCRIPT)!r})\n"
        "from sharpedges.cli import main\n"
        "sys.exit(main(['probe', 'sharpedges.probes.reference:tiny_decoder']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "sharpedges: error: `probe` needs torch: pip install 'sharpedges[torch]'"
    ]
