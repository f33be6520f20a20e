"""The README's promises: CI runs its test command verbatim, and the bundled examples say what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text.split("## Set-up", 1)[1].split("##", 1)[0]
    return [line for line in re.findall(r"^(?!#)(.+)$", setup.split("```bash", 1)[1].split("```", 1)[0], re.M)]


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_check, run_tests = readme_commands()
    assert "sharpedges check examples/" in install_and_check
    assert "pytest" in run_tests
    assert run_tests in (REPO / ".ci" / "run").read_text()
    assert "torch==2.13.0" in run_tests  # never an unpinned torch (that pulls a multi-GB CUDA build)


def test_bundled_examples_show_the_mission_rules(run_cli):
    result = run_cli("check", "--format", "json", "--no-cache", str(REPO / "examples"))
    assert result.returncode == 1
    found: dict[str, set[str]] = {}
    for d in json.loads(result.stdout)["diagnostics"]:
        found.setdefault(Path(d["path"]).name, set()).add(d["rule"])
    assert found.get("gpt_buggy.py") == {"SHP101", "SHP201", "SHP202"}
    assert found.get("deep_postnorm_encoder.py") == {"SHP301"}
    assert found.get("moe_and_generation.py") == {"SHP401", "SHP501", "SHP503"}
    assert "clean_llama_block.py" not in found


def test_readme_and_pyproject_agree_on_the_python_version():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    minimum = re.search(r">=\s*(3\.\d+)", project["requires-python"]).group(1)
    assert f"(Python {minimum}+)" in (REPO / "README.md").read_text()
    assert {"Homepage", "Issues", "Source"} <= set(project["urls"])
    assert any(requirement.startswith("numpy") for requirement in project["optional-dependencies"]["test"])


def test_the_readme_test_command_runs_in_parallel():
    run_tests = readme_commands()[1]
    assert re.search(r"pytest .*-n (auto|\d+)", run_tests)


def test_python_m_sharpedges_works_from_any_directory(tmp_path):
    import subprocess
    import sys

    (tmp_path / "sharpedges").mkdir()  # e.g. the parent directory of a clone named sharpedges
    result = subprocess.run([sys.executable, "-m", "sharpedges", "check", "--no-cache",
                             str(REPO / "examples" / "gpt_buggy.py")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "SHP101" in result.stdout
