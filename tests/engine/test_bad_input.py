"""Hostile and broken files: each is one clear line (and a JSON `errors` entry); the run goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.engine.test_cli_check import UNSCALED


def errors_by_path(run_cli, *paths, extra=()):
    result = run_cli("check", "--format", "json", "--no-cache", *extra, *paths)
    document = json.loads(result.stdout)
    return result, {e["path"]: e["message"] for e in document["errors"]}, document


def test_each_bad_file_is_one_error_and_good_files_still_report(run_cli, tmp_path: Path):
    (tmp_path / "bad.py").write_text(UNSCALED)
    (tmp_path / "syntax.py").write_text("softmax(\n")
    (tmp_path / "latin1.py").write_bytes(b"# softmax\nx = '\xe9\xe8'\n")
    (tmp_path / "cookie.py").write_bytes(b"# -*- coding: latin-1 -*-\n# softmax\nx = '\xe9'\n")
    (tmp_path / "binary.py").write_bytes(b"\x7fELF\x00\x00softmax\x00")
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "loop.py").symlink_to(tmp_path / "loop.py")
    os.mkfifo(tmp_path / "fifo.py")
    result, errors, document = errors_by_path(run_cli, ".")
    assert result.returncode == 2
    assert [d["path"] for d in document["diagnostics"]] == ["bad.py"]
    assert errors["syntax.py"].startswith("syntax error at ")
    assert "cannot decode" in errors["latin1.py"] or "syntax error" in errors["latin1.py"]
    assert "cookie.py" not in errors  # a coding cookie makes latin-1 valid
    assert "binary file" in errors["binary.py"]
    assert "empty.py" not in errors
    assert "symlink loop" in errors["loop.py"]
    assert "not a regular file" in errors["fifo.py"]
    for message in errors.values():
        assert "\n" not in message


def test_huge_files_are_refused_without_reading_them_whole(run_cli, tmp_path: Path):
    with open(tmp_path / "huge.py", "wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    (tmp_path / "oneline.py").write_text("x = '" + "a" * (10 * 1024 * 1024) + "'  # softmax\n")
    result, errors, _ = errors_by_path(run_cli, "huge.py", "oneline.py")
    assert result.returncode == 2
    assert "file too large" in errors["huge.py"] and "file too large" in errors["oneline.py"]


def test_unreadable_file(run_cli, tmp_path: Path):
    if os.geteuid() == 0:
        pytest.skip("root can read files without read permission")
    path = tmp_path / "secret.py"
    path.write_text(UNSCALED)
    path.chmod(0)
    _, errors, _ = errors_by_path(run_cli, "secret.py")
    assert "permission denied" in errors["secret.py"]


def test_missing_path(run_cli, tmp_path: Path):
    result, errors, _ = errors_by_path(run_cli, "nope.py")
    assert result.returncode == 2 and "no such file" in errors["nope.py"]


def test_a_missing_path_is_one_error_never_a_pass(run_cli, tmp_path: Path):
    result = run_cli("check", "--no-cache", "nope.py")
    assert result.returncode == 2
    assert result.stdout == "nope.py: error: cannot read: no such file or directory\n1 file could not be checked.\n"
    (tmp_path / "fine.py").write_text("x = 1\n")
    result = run_cli("check", "--no-cache", "nope.py", "fine.py")
    assert result.returncode == 2 and "All checks passed" not in result.stdout
    assert result.stdout.endswith("No problems found in 1 file. 1 file could not be checked.\n")


def test_an_empty_directory_says_so(run_cli, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not python\n")
    result = run_cli("check", "--no-cache", "empty", "notes")
    assert result.returncode == 0 and result.stdout == "No Python files checked.\n"
    assert result.stderr.splitlines() == [
        "sharpedges: warning: empty: no Python files to check in this directory",
        "sharpedges: warning: notes: no Python files to check in this directory",
    ]


def test_detector_crash_is_reported_with_rule_and_file_and_others_still_report(monkeypatch):
    from sharpedges.engine import Engine
    from sharpedges.registry import all_rules

    rules = all_rules()

    class Boom(rules["SHP101"].detector):
        def check(self, ctx):
            raise RuntimeError("kaboom")

    crashing = type(rules["SHP101"])(rules["SHP101"].spec, Boom)
    healthy = [rule for code, rule in rules.items() if code != "SHP101"]
    result = Engine([crashing, *healthy]).check("model.py", UNSCALED.encode())
    (error,) = result.errors
    assert error.rule == "SHP101" and error.path == "model.py"
    assert "SHP101 crashed: RuntimeError: kaboom" in error.message


def test_deep_nesting_is_an_error_for_that_file_not_a_crash():
    from sharpedges.engine import Engine
    from sharpedges.registry import all_rules

    source = "x = " + "(" * 5000 + "softmax" + ")" * 5000 + "\n"
    result = Engine(all_rules().values()).check("deep.py", source.encode())
    (error,) = result.errors
    assert "nested too deeply" in error.message and result.diagnostics == []


def test_moderate_nesting_is_still_checked():
    from sharpedges.engine import Engine
    from sharpedges.registry import all_rules

    source = (
        "def f(q, k):\n    x = " + "(" * 100 + "q @ k.transpose(-2, -1)" + ")" * 100 + "\n    return x.softmax(-1)\n"
    )
    result = Engine([all_rules()["SHP101"]]).check("ok.py", source.encode())
    assert not result.errors
    assert [d.rule for d in result.diagnostics] == ["SHP101"]
