"""Output people can read (issue 17): short concise lines, the whole message in `--format full`,
colour only on request or at a terminal, a summary with both counts and the fixes available,
`--statistics` alone, and help on every subcommand and flag. Driven through the real CLI."""

from __future__ import annotations

import argparse
import re

import pytest

from sharpedges.cli import build_parser
from sharpedges.diagnostics import Applicability, Diagnostic, DiagnosticFix
from sharpedges.outputs.concise import LINE_WIDTH, diagnostic_line, summary
from sharpedges.runner import RunResult
from tests.engine.test_cli_check import REPO, SCALED, UNSCALED

FILL_OVERFLOWS_HALF = """\
import math
import torch


def attention(query, key, value, mask):
    scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(query.size(-1))
    scores = scores.masked_fill(mask == 0, -1e9)
    return torch.matmul(scores.softmax(dim=-1), value)
"""
# Arithmetic after the fill: dtype-min + bias is -inf, so the same fix is unsafe here.
FILL_THEN_BIAS = FILL_OVERFLOWS_HALF.replace(
    "    return torch.matmul(", "    scores = scores + bias\n    return torch.matmul("
).replace("mask):", "mask, bias):")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def examples(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text(UNSCALED)
    (tmp_path / "pkg" / "good.py").write_text(SCALED)
    (tmp_path / "pkg" / "fill.py").write_text(FILL_OVERFLOWS_HALF)
    (tmp_path / "biased.py").write_text(FILL_THEN_BIAS)
    return tmp_path


def test_concise_lines_are_short_and_full_has_the_whole_message(run_cli):
    concise = run_cli("check", "--no-cache", "examples", cwd=REPO).stdout.splitlines()
    findings = [line for line in concise if ": SHP" in line]
    assert len(findings) >= 5 and all(len(line) <= LINE_WIDTH for line in findings)
    full = run_cli("check", "--no-cache", "--format", "full", "examples", cwd=REPO).stdout
    # SHP301's message, cut short in the concise line, is there in full (wrapped).
    postnorm = next(line for line in findings if "SHP301" in line)
    assert postnorm.endswith("...")
    assert "pass norm_first=True and a final norm" in " ".join(full.split())


def test_summary_counts_files_with_problems_of_files_checked(run_cli, examples):
    result = run_cli("check", "--no-cache", "pkg")
    assert "Found 2 problems in 2 of 3 files." in result.stdout


def test_unsafe_fixes_are_counted_in_the_summary(run_cli, examples):
    result = run_cli("check", "--no-cache", "biased.py")
    assert "biased.py:7:44: SHP103 " in result.stdout and "[*]" not in result.stdout
    assert "No fixes available with `--fix` (1 hidden fix can be enabled with `--fix --unsafe-fixes`)." in result.stdout


def test_fix_alone_applies_a_safe_fix_and_leaves_an_unsafe_one(run_cli, examples):
    result = run_cli("check", "--no-cache", "pkg/fill.py", "biased.py")
    assert "pkg/fill.py:7:44: SHP103 [*] " in result.stdout
    assert "[*] 1 fixable with `--fix` (1 hidden fix can be enabled with `--fix --unsafe-fixes`)." in result.stdout
    result = run_cli("check", "--no-cache", "--fix", "pkg/fill.py", "biased.py")
    assert result.returncode == 1 and "(1 fixed, 1 remaining)" in result.stdout
    fixed = (examples / "pkg" / "fill.py").read_text()
    assert fixed == FILL_OVERFLOWS_HALF.replace("-1e9)", "torch.finfo(scores.dtype).min)")
    assert (examples / "biased.py").read_text() == FILL_THEN_BIAS


def test_safe_fixes_are_marked_and_counted():
    def finding(line: int, applicability: Applicability | None) -> Diagnostic:
        fix = DiagnosticFix(applicability, ()) if applicability else None
        return Diagnostic("SHP103", "mask-fill-overflows-half", "error", "m.py", line, 1, line, 2, "msg", "help", fix)

    result = RunResult([finding(1, "safe"), finding(2, "safe"), finding(3, "unsafe"), finding(4, None)], [], 1)
    assert diagnostic_line(result.diagnostics[0]) == "m.py:1:1: SHP103 [*] msg"
    assert diagnostic_line(result.diagnostics[2]) == "m.py:3:1: SHP103 msg"
    assert (
        summary(result).splitlines()[1]
        == "[*] 2 fixable with `--fix` (1 hidden fix can be enabled with `--fix --unsafe-fixes`)."
    )


@pytest.mark.parametrize(
    "env, coloured",
    [
        ({}, False),  # not a terminal
        ({"FORCE_COLOR": "1"}, True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),
    ],
)
def test_colour_only_when_asked_or_at_a_terminal(run_cli, examples, env, coloured):
    for output in ("concise", "full"):
        result = run_cli(
            "check", "--no-cache", "--format", output, "pkg", env={"NO_COLOR": "", "FORCE_COLOR": "", **env}
        )
        assert bool(ANSI.search(result.stdout)) is coloured
        assert "pkg/bad.py:6:12: SHP101 attention scores" in ANSI.sub("", result.stdout)


def test_colour_at_a_terminal(examples):
    pty = pytest.importorskip("pty")
    import os
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    process = subprocess.run(
        [sys.executable, "-m", "sharpedges", "check", "--no-cache", "pkg"],
        cwd=examples,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env=env,
        timeout=120,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.returncode == 1 and ANSI.search(output.decode())


def test_statistics_prints_only_the_table_most_frequent_first(run_cli, examples):
    (examples / "pkg" / "bad2.py").write_text(UNSCALED)
    result = run_cli("check", "--no-cache", "--statistics", "pkg")
    assert result.stdout.splitlines() == [
        "    2  SHP101  attention-missing-scale",
        "    1  SHP103  [*] mask-fill-overflows-half",
    ]
    assert result.returncode == 1


def _actions(parser: argparse.ArgumentParser, trail: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{trail} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield trail, action


def test_every_subcommand_and_flag_has_help(run_cli):
    missing = [
        f"{trail} {action.option_strings or action.dest}"
        for trail, action in _actions(build_parser(), "sharpedges")
        if not action.help
    ]
    assert missing == []
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert all(choice.help for choice in subcommands._choices_actions)
    check_help = run_cli("check", "--help").stdout
    assert "concise: one line per finding" in " ".join(check_help.split())
