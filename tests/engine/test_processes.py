"""The run's processes: --jobs bounded, memory bounded per file, clean exits on Ctrl-C and SIGTERM,
and no worker outlives a parent killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def many_files(directory: Path, copies: int = 60) -> None:
    sources = sorted((REPO / "examples").glob("*.py"))
    for index in range(copies):
        for source in sources:
            (directory / f"{source.stem}_{index:03d}.py").write_bytes(source.read_bytes())


def children_of(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_until(condition, limit: float = 60.0) -> bool:
    """Poll until `condition()` holds (a bound against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def start_check(directory: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sharpedges", "check", "--no-cache", *flags, "."],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_below_one_is_a_usage_error(run_cli, tmp_path, jobs):
    (tmp_path / "a.py").write_text("x = 1\n")
    result = run_cli("check", "--jobs", jobs, "a.py")
    assert result.returncode == 2 and f"--jobs must be at least 1, not {jobs}" in result.stderr


def test_jobs_never_exceed_the_cores_or_the_files():
    from sharpedges.runner import _jobs

    cores = os.cpu_count() or 1
    assert _jobs(1000, 400) == min(cores, 400)
    assert _jobs(None, 3) == min(cores, 3)
    assert _jobs(2, 0) == 1


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker processes from /proc (Linux)")
def test_sigterm_ends_the_run_with_one_line_and_no_workers_left(tmp_path):
    many_files(tmp_path)
    process = start_check(tmp_path, "--jobs", "2")
    assert wait_until(lambda: children_of(process.pid)), "the pool started"
    workers = children_of(process.pid)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err == "sharpedges: terminated\n" and out == ""
    assert wait_until(lambda: not any(alive(pid) for pid in workers)), "workers outlived the run"


def test_ctrl_c_ends_the_run_with_one_line(tmp_path):
    many_files(tmp_path, copies=30)
    process = start_check(tmp_path, "--jobs", "1")
    time.sleep(1.0)  # whenever it lands, before or during the checks, the outcome is the same
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and err == "sharpedges: interrupted\n"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads worker processes from /proc (Linux)")
def test_workers_die_with_a_parent_killed_outright(tmp_path):
    many_files(tmp_path)
    process = start_check(tmp_path, "--jobs", "2")
    assert wait_until(lambda: children_of(process.pid)), "the pool started"
    workers = children_of(process.pid)
    process.kill()
    process.communicate(timeout=60)
    assert wait_until(lambda: not any(alive(pid) for pid in workers)), "workers outlived a killed parent"


def test_a_file_that_runs_out_of_memory_is_that_files_error(tmp_path: Path, monkeypatch, capsys):
    import sharpedges.runner as runner
    from sharpedges.cli import main

    (tmp_path / "huge.py").write_text("import torch\n")
    (tmp_path / "model.py").write_text((REPO / "examples" / "gpt_buggy.py").read_text())
    real_check = runner.check_source

    def check(engine, display, data, time_limit):
        if display.endswith("huge.py"):
            raise MemoryError
        return real_check(engine, display, data, time_limit)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "check_source", check)
    assert main(["check", "--no-cache", "--jobs", "1", "--format", "json", "."]) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["errors"] == [{"path": "huge.py", "message": "ran out of memory (limit 4096 MiB), not checked"}]
    assert {d["path"] for d in document["diagnostics"]} == {"model.py"}


def test_the_memory_limit_is_applied_while_checking_and_lifted_after():
    import resource

    from sharpedges.processes import limited_memory

    before = resource.getrlimit(resource.RLIMIT_AS)
    with limited_memory(3 * 2**30):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        assert soft <= 3 * 2**30
        with pytest.raises(MemoryError):
            bytearray(4 * 2**30)
    assert resource.getrlimit(resource.RLIMIT_AS) == before
