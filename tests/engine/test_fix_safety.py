"""`--fix` never writes a wrong file: each attack from the "nothing lost" issue, reproduced.

The fixable finding used throughout is SHP103's: `-1e9` written into attention scores becomes
`torch.finfo(scores.dtype).min` (an unsafe fix, so every run passes `--unsafe-fixes`).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from sharpedges.cli import main as cli_main

ATTENTION = """import math
import torch


def attention(query, key, value, mask=None):
    d_k = query.size(-1)
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    return torch.matmul(scores.softmax(dim=-1), value)
"""
FIXED_LINE = "        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)\n"
FIX = ("check", "--select", "SHP103", "--fix", "--unsafe-fixes", "--no-cache")


def expected_fix(source: str) -> str:
    return source.replace("-1e9", "torch.finfo(scores.dtype).min")


@pytest.mark.parametrize(
    "stray",
    ["\f", "\x1c", "\x85", "\u2028", "\x0b", "\u2029"],
    ids=["form-feed", "x1c", "x85", "u2028", "vertical-tab", "u2029"],
)
def test_a_line_break_python_does_not_split_on_never_moves_the_edit(run_cli, tmp_path: Path, stray: str):
    # A form feed is legal whitespace in code; the others live in comments and strings.
    header = "\f\n" if stray == "\f" else f"# a comment with a {stray} inside\nLABEL = 'also {stray} here'\n"
    source = header + ATTENTION
    (tmp_path / "model.py").write_bytes(source.encode("utf-8"))
    result = run_cli(*FIX, "model.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "model.py").read_bytes().decode("utf-8") == expected_fix(source)
    assert "(1 fixed, 0 remaining)" in result.stdout


def test_windows_line_endings_survive_a_fix(run_cli, tmp_path: Path):
    source = ATTENTION.replace("\n", "\r\n")
    (tmp_path / "model.py").write_bytes(source.encode())
    assert run_cli(*FIX, "model.py").returncode == 0
    assert (tmp_path / "model.py").read_bytes() == expected_fix(source).encode()


def test_a_bom_is_kept_and_a_fix_on_its_line_applies(run_cli, tmp_path: Path):
    source = (
        "def attend(q, k, mask): s = q @ k.transpose(-2, -1) / 8; s = s.masked_fill(mask == 0, -1e9); "
        "return s.softmax(-1)\nimport torch\n"
    )
    (tmp_path / "model.py").write_bytes(b"\xef\xbb\xbf" + source.encode())
    assert run_cli(*FIX, "model.py").returncode == 0
    data = (tmp_path / "model.py").read_bytes()
    assert data == b"\xef\xbb\xbf" + source.replace("-1e9", "torch.finfo(s.dtype).min").encode()


def test_a_latin1_file_is_fixed_in_its_own_encoding(run_cli, tmp_path: Path):
    source = "# -*- coding: latin-1 -*-\n" + ATTENTION.replace("d_k = query", "d_k = query  # é, à").replace(
        "    if mask", "    label = 'né'\n    if mask"
    )
    (tmp_path / "model.py").write_bytes(source.encode("latin-1"))
    result = run_cli(*FIX, "model.py")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.py").read_bytes() == expected_fix(source).encode("latin-1")


def test_the_cache_never_supplies_fix_edits(run_cli, tmp_path: Path):
    (tmp_path / "model.py").write_text(ATTENTION)
    assert run_cli("check", "--select", "SHP103", "--cache-dir", "cache", "model.py").returncode == 1
    [entry] = [p for p in (tmp_path / "cache").rglob("*.json")]
    data = json.loads(entry.read_text().split("\n", 1)[1])
    data["diagnostics"][0]["fix"]["edits"][0]["content"] = "__import__('os').system('echo pwned')"
    body = json.dumps(data)  # an edit that even keeps the entry's digest consistent
    entry.write_text(hashlib.sha256(body.encode()).hexdigest() + "\n" + body)
    result = run_cli("check", "--select", "SHP103", "--fix", "--unsafe-fixes", "--cache-dir", "cache", "model.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "model.py").read_text() == expected_fix(ATTENTION)


def test_a_file_changed_after_the_check_is_not_fixed(tmp_path: Path, monkeypatch, capsys):
    import sharpedges.session as session

    model = tmp_path / "model.py"
    model.write_text(ATTENTION)
    hand_fixed = ATTENTION.replace("-1e9", "-65e3")
    checked = session.run_check

    def check_then_someone_edits(options):
        result = checked(options)
        model.write_text(hand_fixed)  # the user fixes it by hand between check and fix
        return result

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(session, "run_check", check_then_someone_edits)
    assert cli_main([*FIX, "model.py"]) == 2
    assert model.read_text() == hand_fixed
    assert (
        "model.py: error: fix not applied: the file changed since it was checked; run again" in capsys.readouterr().out
    )


def test_a_read_only_file_is_refused(run_cli, tmp_path: Path):
    model = tmp_path / "model.py"
    model.write_text(ATTENTION)
    model.chmod(0o444)
    result = run_cli(*FIX, "model.py")
    assert result.returncode == 2
    assert "model.py: error: fix not applied: the file is read-only" in result.stdout
    assert model.read_text() == ATTENTION


def test_a_failed_write_is_reported_for_that_file_and_the_others_are_still_fixed(tmp_path: Path, monkeypatch, capsys):
    import sharpedges.fixes as fixes

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.py").write_text(ATTENTION)
    (tmp_path / "b.py").write_text(ATTENTION)
    real_mkstemp = fixes.tempfile.mkstemp

    def mkstemp(dir=None, **kwargs):  # what a read-only directory does to a non-root user
        if Path(dir).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(dir=dir, **kwargs)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fixes.tempfile, "mkstemp", mkstemp)
    assert cli_main([*FIX, "--jobs", "1", "."]) == 2
    out = capsys.readouterr().out
    assert "locked/a.py: error: fix not applied: cannot write: permission denied" in out
    assert (tmp_path / "locked" / "a.py").read_text() == ATTENTION
    assert (tmp_path / "b.py").read_text() == expected_fix(ATTENTION)


def test_a_symlink_is_refused_and_its_target_untouched(run_cli, tmp_path: Path):
    target = tmp_path / "real.py"
    target.write_text(ATTENTION)
    (tmp_path / "link.py").symlink_to(target)
    result = run_cli(*FIX, "link.py")
    assert "link.py: error: fix not applied: is a symbolic link; fix the file it points to instead" in result.stdout
    assert (tmp_path / "link.py").is_symlink() and target.read_text() == ATTENTION


def test_a_hard_linked_file_is_fixed_in_place_for_every_link(run_cli, tmp_path: Path):
    model = tmp_path / "model.py"
    model.write_text(ATTENTION)
    os.link(model, tmp_path / "other_name.py")
    inode = model.stat().st_ino
    assert run_cli(*FIX, "model.py").returncode == 0
    assert model.stat().st_ino == inode
    assert (tmp_path / "other_name.py").read_text() == expected_fix(ATTENTION)


def test_mode_is_kept(run_cli, tmp_path: Path):
    model = tmp_path / "model.py"
    model.write_text(ATTENTION)
    model.chmod(0o750)
    assert run_cli(*FIX, "model.py").returncode == 0
    assert stat.S_IMODE(model.stat().st_mode) == 0o750 and model.read_text() == expected_fix(ATTENTION)


def test_stdin_fix_prints_the_fixed_source_and_diff_prints_the_diff(run_cli, tmp_path: Path):
    fixed = run_cli(
        "check", "--select", "SHP103", "--fix", "--unsafe-fixes", "--stdin-filename", "model.py", input=ATTENTION
    )
    assert fixed.returncode == 0 and fixed.stdout == expected_fix(ATTENTION)
    diff = run_cli(
        "check", "--select", "SHP103", "--diff", "--unsafe-fixes", "--stdin-filename", "model.py", input=ATTENTION
    )
    assert diff.returncode == 1 and f"+{FIXED_LINE}" in diff.stdout and "--- a/model.py" in diff.stdout


def test_stdin_is_checked_as_the_file_it_names(run_cli, tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.sharpedges.per-file-ignores]\n"legacy/*" = ["SHP103"]\n')
    ignored = run_cli("check", "--select", "SHP103", "--stdin-filename", "legacy/model.py", input=ATTENTION)
    assert ignored.returncode == 0 and "SHP103" not in ignored.stdout
    reported = run_cli("check", "--select", "SHP103", "--stdin-filename", "src/model.py", input=ATTENTION)
    assert reported.returncode == 1 and "src/model.py:9:48: SHP103" in reported.stdout


def test_a_dash_reads_standard_input(run_cli, tmp_path: Path):
    result = run_cli("check", "--select", "SHP103", "-", input=ATTENTION)
    assert result.returncode == 1 and "-:9:48: SHP103" in result.stdout


def test_stdin_named_as_an_excluded_file_is_not_checked_and_says_so(run_cli, tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.sharpedges]\nextend-exclude = ["vendored/"]\n')
    result = run_cli("check", "--select", "SHP103", "--stdin-filename", "vendored/model.py", input=ATTENTION)
    assert result.returncode == 0 and "SHP103" not in result.stdout
    assert "vendored/model.py: excluded by the configured exclude patterns, not checked" in result.stderr
    fixed = run_cli(
        "check",
        "--select",
        "SHP103",
        "--fix",
        "--unsafe-fixes",
        "--stdin-filename",
        "vendored/model.py",
        input=ATTENTION,
    )
    assert fixed.returncode == 0 and fixed.stdout == ATTENTION  # the source passes through untouched
