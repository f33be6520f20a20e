"""One contract for every file: exit 2 means some file could not be read or parsed, whatever words
it holds, and no input crashes or hangs the run (the other files' results are always reported)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

UNSCALED = """import torch


def attend(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
"""


def check_json(run_cli, *paths: str):
    result = run_cli("check", "--format", "json", "--no-cache", "--select", "SHP101", *paths)
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = (1\n", "syntax error at 1:5: '(' was never closed"),
        ("def f(:\n    pass\n", "syntax error at 1:7: invalid syntax"),
        ("x = 1\n  y = 2\n", "syntax error at 2:"),
        ("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n", "nested too deeply"),
    ],
)
def test_a_broken_file_with_no_rule_words_is_still_an_error_with_pythons_message(run_cli, tmp_path, source, message):
    (tmp_path / "broken.py").write_text(source)
    code, document = check_json(run_cli, "broken.py")
    assert code == 2
    [error] = document["errors"]
    assert error["path"] == "broken.py" and error["message"].startswith(message)


def test_an_undecodable_file_with_no_rule_words_is_an_error(run_cli, tmp_path):
    (tmp_path / "latin.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    code, document = check_json(run_cli, "latin.py")
    assert code == 2 and document["errors"][0]["message"].startswith("syntax error")


@pytest.mark.parametrize(
    "deep",
    [
        "f = " + "lambda: " * 3500 + "softmax",  # segfaulted the whole run
        "x = softmax" + "[0]" * 6000,  # 66 s in libcst's native parser, past any alarm
        "x = " + "not " * 10000 + "softmax",  # 22 s and 5.4 GB
        "x = " + " + ".join(["softmax"] * 3000),
    ],
    ids=["lambdas", "subscripts", "nots", "sum"],
)
def test_pathological_nesting_is_refused_in_one_line_and_the_other_files_are_reported(run_cli, tmp_path, deep):
    (tmp_path / "deep.py").write_text(f"import torch\n{deep}\n")
    (tmp_path / "model.py").write_text(UNSCALED)
    code, document = check_json(run_cli, ".")
    assert code == 2
    assert document["errors"] == [
        {"path": "deep.py", "message": "nested too deeply (more than 500 levels), not checked"}
    ]
    assert [(d["path"], d["rule"]) for d in document["diagnostics"]] == [("model.py", "SHP101")]


def test_nesting_below_the_limit_is_checked(run_cli, tmp_path):
    (tmp_path / "model.py").write_text(UNSCALED + "\nTOTAL = " + " + ".join(["1"] * 400) + "\n")
    code, document = check_json(run_cli, "model.py")
    assert code == 1 and document["errors"] == [] and len(document["diagnostics"]) == 1


def test_syntax_warnings_of_the_checked_code_are_not_printed(run_cli, tmp_path):
    (tmp_path / "model.py").write_text(UNSCALED + "\nassert (1, 'always true')\nx = 1 is 1\npath = '\\d'\n")
    result = run_cli("check", "--no-cache", "model.py")
    assert result.returncode == 1 and result.stderr == ""


def test_code_newer_than_this_python_is_not_called_broken(run_cli, tmp_path: Path):
    # libcst reads some syntax the running Python may not; such a file is checked, not refused.
    import sys

    import libcst

    source = "type Vector = list[float]\n"
    try:
        compile(source, "x", "exec")
        pytest.skip("this Python reads the newer syntax itself")
    except SyntaxError:
        pass
    try:
        libcst.parse_module(source)
    except libcst.ParserSyntaxError:
        pytest.skip(
            f"libcst {libcst.__version__ if hasattr(libcst, '__version__') else ''} cannot read it either "
            f"on Python {sys.version_info[:2]}"
        )
    (tmp_path / "new.py").write_text(source)
    code, document = check_json(run_cli, "new.py")
    assert code == 0 and document["errors"] == []


def test_github_annotations_of_errors_carry_the_line_and_no_unexplained_code(run_cli, tmp_path):
    (tmp_path / "broken.py").write_text("import torch\n\nx = (1\n")
    (tmp_path / "deep.py").write_text("x = " + "not " * 1000 + "a\n")
    result = run_cli("check", "--format", "github", "--no-cache", "broken.py", "deep.py")
    assert result.returncode == 2
    lines = sorted(result.stdout.splitlines())
    assert lines == [
        "::error file=broken.py,line=3,col=5,title=sharpedges%3A file not checked::"
        "syntax error at 3:5: '(' was never closed",
        "::error file=deep.py,title=sharpedges%3A file not checked::nested too deeply (more than 500 levels), "
        "not checked",
    ]
