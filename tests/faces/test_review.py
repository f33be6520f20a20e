"""`sharpedges review` on real git repositories: which lines changed, which findings are kept,
and what a reviewer reads. Golden files live in tests/faces/golden/; after a deliberate change,
regenerate them with SHARPEDGES_UPDATE_GOLDEN=1 and read the diff before committing."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sharpedges.review import diff_changes, parse_unified_diff

GOLDEN = Path(__file__).parent / "golden"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}
# Only SHP101 is selected so that rules added later do not change what these repositories show.
SELECT = ("--select", "SHP101", "--no-cache")

UNSCALED = (
    "import torch\n\n\ndef old_attention(q, k, v):\n    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v\n"
)
ADDED = (
    "\n\ndef new_attention(q, k, v):\n    scores = q @ k.transpose(-2, -1)\n"
    "    return torch.softmax(scores, dim=-1) @ v\n"
)
SCALED = (
    "import math\n\nimport torch\n\n\ndef attention(q, k, v):\n"
    "    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))\n    return torch.softmax(scores, dim=-1) @ v\n"
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    ).stdout


@pytest.fixture
def repo(tmp_path):
    """main: pkg/model.py with an old unscaled attention (line 5) and a clean pkg/clean.py.
    feature (checked out): one commit adds an unscaled `new_attention` (finding on line 10);
    the working tree then adds an unstaged unscaled function to pkg/clean.py and an untracked file."""
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text(UNSCALED)
    (tmp_path / "pkg" / "clean.py").write_text(SCALED)
    (tmp_path / "README.md").write_text("notes\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    git(tmp_path, "checkout", "-q", "-b", "feature")
    with open(tmp_path / "pkg" / "model.py", "a") as handle:
        handle.write(ADDED)
    (tmp_path / "README.md").write_text("more notes\n")
    git(tmp_path, "commit", "-q", "-am", "feature")
    with open(tmp_path / "pkg" / "clean.py", "a") as handle:
        handle.write("\n\ndef probs(q, k):\n    return torch.softmax(q @ k.mT, dim=-1)\n")
    (tmp_path / "scratch.py").write_text("import torch\n\n\ndef f(q, k):\n    return (q @ k.mT).softmax(-1)\n")
    return tmp_path


@pytest.fixture
def review(monkeypatch, capsys):
    """`sharpedges review ARGS` run in-process in `cwd` (one subprocess per call would make this
    file slow); returns returncode, stdout and stderr like subprocess.run."""
    from sharpedges.cli import main

    def run(*args, cwd, input=None):
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "stdin", io.StringIO(input or ""))
        capsys.readouterr()
        code = main(["review", *args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def findings(result) -> list[tuple[str, int]]:
    assert result.returncode in (0, 1), result.stderr
    return [(d["path"], d["line"]) for d in json.loads(result.stdout)["diagnostics"]]


def assert_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SHARPEDGES_UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with SHARPEDGES_UPDATE_GOLDEN=1 and review it"
    assert actual == path.read_text(encoding="utf-8")


def test_unified_diff_lines_follow_hunk_counts():
    diff = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,4 @@\n a\n-b\n+++ c\n+d\n e\n"
        "@@ -10 +11,0 @@\n-gone\n@@ -20,0 +21,2 @@\n+n1\n+n2\n\\ No newline at end of file\n"
        "diff --git a/y.py b/y.py\ndeleted file mode 100644\n--- a/y.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-+++ b/z\n"
        "--- old/w.py\t2024-01-01\n+++ new/w.py\t2024-01-02\n@@ -0,0 +1 @@\n+w\n"
    )
    # "+++ c" is an added line, not a header; y.py is deleted; diff -u keeps its own prefixes.
    assert parse_unified_diff(diff) == {"x.py": {2, 3, 21, 22}, "new/w.py": {1}}


def test_diff_paths_are_kept_to_the_paths_asked_for():
    diff = "+++ b/pkg/a.py\n@@ -0,0 +1 @@\n+x\n+++ b/pkgextra/b.py\n@@ -0,0 +1 @@\n+y\n"
    assert set(diff_changes(diff, ["pkg"], "test").lines) == {"pkg/a.py"}
    assert set(diff_changes(diff, ["."], "test").lines) == {"pkg/a.py", "pkgextra/b.py"}


def test_default_base_is_the_merge_base_and_keeps_only_changed_lines(repo, review):
    # Committed, unstaged and untracked changes count; the old finding on line 5 does not.
    result = review("--format", "json", *SELECT, cwd=repo)
    assert result.returncode == 1
    assert findings(result) == [("pkg/clean.py", 12), ("pkg/model.py", 10), ("scratch.py", 5)]
    review = json.loads(result.stdout)["review"]
    assert review["base"].startswith("merge base with main (")
    assert review["files"] == ["pkg/clean.py", "pkg/model.py", "scratch.py"]  # README.md is no Python


def test_all_lines_keeps_old_findings_in_changed_files(repo, review):
    result = review("--all-lines", "--format", "json", *SELECT, cwd=repo)
    assert ("pkg/model.py", 5) in findings(result)


def test_base_and_paths_narrow_the_change(repo, review):
    head_only = review("--base", "HEAD", "--format", "json", *SELECT, cwd=repo)
    assert findings(head_only) == [("pkg/clean.py", 12), ("scratch.py", 5)]  # the commit is in the base
    under_pkg = review("--format", "json", *SELECT, "pkg", cwd=repo)
    assert findings(under_pkg) == [("pkg/clean.py", 12), ("pkg/model.py", 10)]


def test_working_tree_against_head_on_the_default_branch(repo, review):
    git(repo, "checkout", "-q", "-f", "main")
    (repo / "scratch.py").unlink()
    clean = review(*SELECT, cwd=repo)
    assert clean.returncode == 0, clean.stderr
    assert "**sharpedges found no problems on changed lines.** Checked 0 changed Python files" in clean.stdout
    with open(repo / "pkg" / "model.py", "a") as handle:
        handle.write(ADDED)
    git(repo, "add", "pkg/model.py")  # staged changes count as well
    assert findings(review("--format", "json", *SELECT, cwd=repo)) == [("pkg/model.py", 10)]


def test_diff_on_stdin_gives_the_same_findings_as_git(repo, review):
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "main")
    from_stdin = review("--diff-file", "-", "--format", "json", *SELECT, cwd=repo, input=diff)
    from_git = review("--format", "json", *SELECT, cwd=repo)
    assert findings(from_stdin) == findings(from_git) == [("pkg/clean.py", 12), ("pkg/model.py", 10), ("scratch.py", 5)]
    assert json.loads(from_stdin.stdout)["review"]["base"] == "the diff in standard input"


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("--base", "no-such-branch"), None, "unknown revision 'no-such-branch'"),
        (("--base", "main", "--diff-file", "-"), "", "--base and --diff-file exclude each other"),
        (("--diff-file", "-"), "just some text\n", "standard input: not a unified diff"),
        (("--diff-file", "missing.diff"), None, "cannot read missing.diff"),
    ],
)
def test_bad_input_is_a_usage_error(repo, review, args, stdin, message):
    result = review(*args, cwd=repo, input=stdin)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_outside_a_repository_is_a_clear_error(tmp_path, run_cli):
    result = run_cli("review", cwd=tmp_path, env={"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})
    assert result.returncode == 2 and "git rev-parse failed: fatal: not a git repository" in result.stderr


def test_json_carries_the_explanation(repo, review):
    data = json.loads(review("--format", "json", *SELECT, cwd=repo).stdout)
    explanation = data["diagnostics"][0]["explanation"]
    assert explanation["skill"].startswith("transformer-architecture#")
    assert explanation["why"] and explanation["symptoms"] and explanation["use_instead"]
    assert explanation["reference_impl"] == "attention:attention_ref"
    assert explanation["reference_location"].startswith("reference_impls/attention.py:")
    assert data["summary"] == {"files": 3, "diagnostics": 3, "errors": 0}


def test_markdown_review_golden(repo, run_cli):
    result = run_cli("review", "--base", "main", *SELECT, cwd=repo)
    assert result.returncode == 1, result.stderr
    assert_golden("review.md", result.stdout)


def test_github_annotations_golden(repo, review):
    result = review("--base", "main", "--format", "github", *SELECT, cwd=repo)
    assert result.returncode == 1, result.stderr
    assert_golden("review.github.txt", result.stdout)


def test_sarif_has_only_the_kept_results(repo, review):
    sarif = json.loads(review("--base", "main", "--format", "sarif", *SELECT, cwd=repo).stdout)
    lines = [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in sarif["runs"][0]["results"]]
    assert lines == [12, 10, 5]
