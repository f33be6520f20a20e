"""The real pre-commit installs our hook from this checkout and runs it on a user's repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BAD = "import torch\n\n\ndef attend(q, k, v):\n    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v\n"
GOOD = (
    "import math\nimport torch\n\n\ndef attend(q, k, v):\n"
    "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))\n    return torch.softmax(scores, dim=-1) @ v\n"
)


def _pre_commit() -> str:
    beside_python = Path(sys.executable).with_name("pre-commit")
    found = str(beside_python) if beside_python.exists() else shutil.which("pre-commit")
    assert found, "pre-commit is a test dependency: pip install -e '.[test]'"
    return found


def _git(*args, cwd):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_hook_manifest_declares_both_hooks_as_pre_commit_expects():
    hooks = {hook["id"]: hook for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"sharpedges", "sharpedges-fix"}
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert hook["types_or"] == ["python", "pyi"]
        assert hook["entry"].startswith("sharpedges check --named-only")
        assert "torch" not in hook["entry"] and "additional_dependencies" not in hook
    assert hooks["sharpedges-fix"]["entry"].endswith("--fix")


def test_named_only_without_files_is_a_silent_no_op(run_cli, tmp_path):
    (tmp_path / "bad.py").write_text(BAD)  # would be found by a plain `check`
    result = run_cli("check", "--named-only")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """This checkout's working tree committed into a throwaway repository: a fixed rev, so
    pre-commit builds the hook environment once for the module (try-repo on a dirty tree
    would make a fresh commit, and a fresh environment, on every call)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    target = tmp_path_factory.mktemp("sharpedges-snapshot")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git("init", "-q", cwd=target)
    _git("add", ".", cwd=target)
    _git("commit", "-q", "-m", "snapshot", cwd=target)
    return target


@pytest.fixture(scope="module")
def try_repo(snapshot, tmp_path_factory):
    executable = _pre_commit()
    home = tmp_path_factory.mktemp("pre-commit-home")

    def run(project: Path, hook: str, *files: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
        env.pop("VIRTUAL_ENV", None)
        return subprocess.run(
            [executable, "try-repo", str(snapshot), hook, "--files", *files],
            cwd=project,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )

    run.home = home  # the hook environments built here, shared with a plain `pre-commit run`
    return run


@pytest.fixture
def project(tmp_path):
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not python\n")
    _git("add", ".", cwd=tmp_path)
    return tmp_path


@pytest.mark.slow
def test_try_repo_fails_on_the_finding_and_passes_clean_code(try_repo, project):
    bad = try_repo(project, "sharpedges", "bad.py")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "bad.py:5:" in bad.stdout and "SHP101" in bad.stdout
    good = try_repo(project, "sharpedges", "good.py")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Passed" in good.stdout


@pytest.mark.slow
def test_try_repo_with_no_python_files_skips_the_hook(try_repo, project):
    result = try_repo(project, "sharpedges", "notes.txt")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no files to check" in result.stdout and "Skipped" in result.stdout


@pytest.mark.slow
def test_readme_config_from_a_clone_works(snapshot, try_repo, project):
    """The README's `.pre-commit-config.yaml` for a clone, with its path and commit filled in,
    runs the hook (the published `repo:`/`rev:` form waits for a release)."""
    readme = (REPO / "README.md").read_text().split("## pre-commit", 1)[1]
    config = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=snapshot, check=True, capture_output=True, text=True
    ).stdout.strip()
    config = config.replace("/path/to/sharpedges", str(snapshot)).replace("0" * 40, commit)
    assert yaml.safe_load(config)["repos"][0]["rev"] == commit
    (project / ".pre-commit-config.yaml").write_text(config)
    home = try_repo.home
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [_pre_commit(), "run", "--files", "bad.py"], cwd=project, capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bad.py:5:" in result.stdout and "SHP101" in result.stdout


DROPOUT = (
    "import torch.nn as nn\nimport torch.nn.functional as F\n\n\nclass Block(nn.Module):\n"
    "    def forward(self, x):\n        return F.dropout(x, 0.1)\n"
)


@pytest.mark.slow
def test_fix_hook_applies_a_safe_fix_and_fails_the_commit_that_needs_it(try_repo, project):
    (project / "block.py").write_text(DROPOUT)
    _git("add", "block.py", cwd=project)  # pre-commit runs on what is staged
    result = try_repo(project, "sharpedges-fix", "block.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "files were modified by this hook" in result.stdout
    assert "(1 fixed, 0 remaining)" in result.stdout
    assert (project / "block.py").read_text() == DROPOUT.replace(
        "F.dropout(x, 0.1)", "F.dropout(x, 0.1, training=self.training)"
    )
    again = try_repo(project, "sharpedges-fix", "block.py")
    assert again.returncode == 0, again.stdout + again.stderr
