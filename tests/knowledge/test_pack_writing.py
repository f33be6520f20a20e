"""`sharpedges pack` writes only what it should (issues 17 and 20): it never overwrites a different
file without --force, never writes through a symlink planted in --out, says how many files it
wrote, and turns OS errors into one line. Driven through the real CLI."""

from __future__ import annotations

from pathlib import Path


def _pack(run_cli, out: Path, *extra: str):
    return run_cli("pack", "--target", "cursor", "--out", str(out), *extra)


def test_pack_says_what_it_wrote_and_leaves_identical_files(run_cli, tmp_path):
    first = _pack(run_cli, tmp_path / "out")
    assert first.returncode == 0 and first.stdout.startswith("wrote 13 files to ")
    again = _pack(run_cli, tmp_path / "out")
    assert again.returncode == 0 and "wrote 0 files" in again.stdout and "(13 already up to date)" in again.stdout


def test_a_different_file_is_kept_unless_forced(run_cli, tmp_path):
    _pack(run_cli, tmp_path / "out")
    edited = sorted((tmp_path / "out").rglob("*.mdc"))[0]
    edited.write_text("my own notes\n")
    refused = _pack(run_cli, tmp_path / "out")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"{edited} exists and differs from the pack; pass --force to overwrite it" in refused.stderr
    assert edited.read_text() == "my own notes\n"
    forced = _pack(run_cli, tmp_path / "out", "--force")
    assert forced.returncode == 0 and forced.stdout.startswith("wrote 1 file to ")
    assert edited.read_text() != "my own notes\n"


def test_symlinks_planted_in_out_are_not_followed(run_cli, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".cursor").symlink_to(outside)
    result = _pack(run_cli, tmp_path / "out", "--force")
    assert result.returncode == 2 and "is a symlink; refusing to write through it" in result.stderr
    assert not any(outside.rglob("*"))
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "AGENTS.md").symlink_to(outside / "AGENTS.md")
    result = run_cli("pack", "--target", "agents-md", "--out", str(agents), "--force")
    assert result.returncode == 2 and "AGENTS.md is a symlink" in result.stderr
    assert not (outside / "AGENTS.md").exists()


def test_os_errors_are_one_clear_line(run_cli, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = run_cli("pack", "--target", "json", "--out", str(tmp_path / "a-file" / "out"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "sharpedges: error: " in result.stderr and "Errno" not in result.stderr and "Traceback" not in result.stderr
