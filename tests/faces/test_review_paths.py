"""`sharpedges review` reviews every changed file: outside the current directory, with names git
must quote, and it rejects a diff whose hunk counts run into the next file (issues 17 and 20).
Each test drives the real CLI."""

from __future__ import annotations

import json

from tests.faces.test_review import ADDED, SELECT, UNSCALED, git, repo  # noqa: F401 (repo is a fixture)


def _findings(result) -> list[tuple[str, int]]:
    assert result.returncode in (0, 1), result.stderr
    return sorted((d["path"], d["line"]) for d in json.loads(result.stdout)["diagnostics"])


def test_review_from_a_subdirectory_sees_changes_named_outside_it(repo, run_cli):  # noqa: F811
    (repo / "docs").mkdir()
    everything = _findings(run_cli("review", "--format", "json", *SELECT, "..", cwd=repo / "docs"))
    assert ("../pkg/model.py", 10) in everything and ("../scratch.py", 5) in everything
    one_file = _findings(run_cli("review", "--format", "json", *SELECT, "../pkg/model.py", cwd=repo / "docs"))
    assert one_file == [("../pkg/model.py", 10)]
    whole_repository = _findings(run_cli("review", "--format", "json", *SELECT, cwd=repo / "docs"))
    assert whole_repository == everything


def test_github_annotations_name_paths_from_the_repository_root(repo, run_cli):  # noqa: F811
    (repo / "docs").mkdir()
    result = run_cli("review", "--format", "github", *SELECT, "../pkg/model.py", cwd=repo / "docs")
    assert result.returncode == 1
    assert result.stdout.startswith("::error file=pkg/model.py,line=10,")


def test_files_whose_names_git_quotes_are_reviewed(repo, run_cli):  # noqa: F811
    names = ['we"ird.py', "back\\slash.py", "tab\there.py"]
    for name in names:
        (repo / "pkg" / name).write_text(UNSCALED)
    git(repo, "add", "pkg")
    git(repo, "commit", "-q", "-m", "odd names")
    for name in names:  # a changed tracked file, and an untracked one
        with open(repo / "pkg" / name, "a") as handle:
            handle.write(ADDED)
        (repo / "pkg" / f"new {name}").write_text(UNSCALED)
    found = _findings(run_cli("review", "--base", "HEAD", "--format", "json", *SELECT, "pkg", cwd=repo))
    for name in names:
        assert (f"pkg/{name}", 10) in found and (f"pkg/new {name}", 5) in found


def test_a_hunk_running_past_the_next_file_header_is_rejected(repo, run_cli):  # noqa: F811
    diff = (
        "diff --git a/pkg/clean.py b/pkg/clean.py\n--- a/pkg/clean.py\n+++ b/pkg/clean.py\n"
        "@@ -1,0 +1,9 @@\n+x\n"
        "diff --git a/pkg/model.py b/pkg/model.py\n--- a/pkg/model.py\n+++ b/pkg/model.py\n"
        "@@ -9,0 +10,1 @@\n+    return torch.softmax(scores, dim=-1) @ v\n"
    )
    result = run_cli("review", "--diff-file", "-", *SELECT, cwd=repo, input=diff)
    assert result.returncode == 2
    assert "malformed diff at line 6: the hunk before it counts more lines than it has" in result.stderr
