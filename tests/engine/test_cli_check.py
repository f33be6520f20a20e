"""The `check` command end to end, through the real CLI in a subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNSCALED = """\
import torch.nn.functional as F


def attend(q, k, v):
    att = q @ k.transpose(-2, -1)
    return F.softmax(att, dim=-1) @ v
"""
SCALED = UNSCALED.replace("att = q @ k.transpose(-2, -1)", "att = q @ k.transpose(-2, -1) * q.size(-1) ** -0.5")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "bad.py").write_text(UNSCALED)
    (tmp_path / "pkg" / "good.py").write_text(SCALED)
    return tmp_path


def test_concise_output_and_exit_code(run_cli, project):
    result = run_cli("check", "pkg")
    assert result.returncode == 1
    assert "pkg/bad.py:6:12: SHP101 attention scores" in result.stdout
    assert "good.py" not in result.stdout
    assert "Found 1 problem in 1 of 2 files." in result.stdout


def test_clean_code_exits_zero(run_cli, project):
    result = run_cli("check", "pkg/good.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed" in result.stdout


def test_exit_zero(run_cli, project):
    assert run_cli("check", "--exit-zero", "pkg").returncode == 0


def test_json_matches_conventions(run_cli, project):
    result = run_cli("check", "--format", "json", "pkg")
    document = json.loads(result.stdout)
    assert set(document) == {"version", "diagnostics", "errors", "summary"}
    assert document["version"] == 1
    (diagnostic,) = document["diagnostics"]
    # The promised keys, and one extension: the locations the finding rests on.
    assert set(diagnostic) == {
        "rule",
        "name",
        "severity",
        "path",
        "line",
        "column",
        "end_line",
        "end_column",
        "message",
        "help",
        "fix",
        "related",
    }
    # the unscaled product the softmax consumes, one line up
    assert [(r["line"], r["column"], r["message"]) for r in diagnostic["related"]] == [
        (5, 11, "the unscaled QK^T product that reaches this softmax")
    ]
    assert diagnostic["rule"] == "SHP101" and diagnostic["name"] == "attention-missing-scale"
    assert diagnostic["path"] == "pkg/bad.py"
    assert (diagnostic["line"], diagnostic["column"]) == (6, 12)
    assert diagnostic["fix"] is None
    assert document["summary"] == {"files": 2, "diagnostics": 1, "errors": 0}


def test_full_format_shows_source_and_caret(run_cli, project):
    out = run_cli("check", "--format", "full", "pkg").stdout
    assert "    return F.softmax(att, dim=-1) @ v" in out
    assert "^^^^" in out and "help: sharpedges rule SHP101" in out


def test_github_format(run_cli, project):
    out = run_cli("check", "--format", "github", "pkg").stdout
    assert out.startswith("::error file=pkg/bad.py,line=6,col=12,")
    assert "title=SHP101::SHP101 attention scores" in out


def test_sarif_validates_against_the_schema(run_cli, project):
    import jsonschema

    schema = (
        json.loads(Path("/work/shared/schemas/sarif-schema-2.1.0.json").read_text())
        if Path("/work/shared/schemas/sarif-schema-2.1.0.json").exists()
        else None
    )
    if schema is None:
        schema = json.loads((REPO.parent / "shared" / "schemas" / "sarif-schema-2.1.0.json").read_text())
    document = json.loads(run_cli("check", "--format", "sarif", "pkg").stdout)
    jsonschema.validate(document, schema)
    run = document["runs"][0]
    (rule,) = run["tool"]["driver"]["rules"]
    assert rule["id"] == "SHP101" and rule["defaultConfiguration"]["level"] == "error"
    assert {"shortDescription", "fullDescription", "help", "properties", "name"} <= set(rule)
    (result,) = run["results"]
    assert result["ruleId"] == "SHP101"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "pkg/bad.py"
    assert result["partialFingerprints"]["primaryLocationLineHash"]


def test_statistics(run_cli, project):
    out = run_cli("check", "--statistics", "pkg").stdout
    assert "    1  SHP101  attention-missing-scale" in out


def test_select_and_ignore(run_cli, project):
    assert run_cli("check", "--ignore", "SHP1", "pkg").returncode == 0
    assert run_cli("check", "--select", "SHP101", "pkg").returncode == 1
    assert run_cli("check", "--select", "SHP2", "pkg").returncode == 0


def test_unknown_rule_code_is_a_usage_error(run_cli, project):
    result = run_cli("check", "--select", "SHP999", "pkg")
    assert result.returncode == 2
    assert "argument --select: unknown rule code or prefix 'SHP999'" in result.stderr


def test_noqa_specific_and_bare(run_cli, tmp_path):
    (tmp_path / "a.py").write_text(UNSCALED.replace("dim=-1) @ v", "dim=-1) @ v  # noqa: SHP101"))
    (tmp_path / "b.py").write_text(UNSCALED.replace("dim=-1) @ v", "dim=-1) @ v  # noqa"))
    (tmp_path / "c.py").write_text(UNSCALED.replace("dim=-1) @ v", "dim=-1) @ v  # noqa: SHP201"))
    out = run_cli("check", "a.py", "b.py", "c.py").stdout
    assert "a.py" not in out and "b.py" not in out and "c.py:6:12: SHP101" in out


def test_noqa_on_first_line_of_multiline_statement(run_cli, tmp_path):
    source = UNSCALED.replace(
        "    return F.softmax(att, dim=-1) @ v",
        "    return (  # noqa: SHP101\n        F.softmax(att, dim=-1) @ v\n    )",
    )
    (tmp_path / "m.py").write_text(source)
    assert run_cli("check", "m.py").returncode == 0


def test_config_per_file_ignores_and_rule_selection(run_cli, project):
    (project / "pyproject.toml").write_text('[tool.sharpedges]\nper-file-ignores = {"pkg/bad.py" = ["SHP101"]}\n')
    assert run_cli("check", "pkg").returncode == 0
    (project / "pyproject.toml").write_text('[tool.sharpedges]\nignore = ["SHP101"]\n')
    assert run_cli("check", "pkg").returncode == 0
    (project / "pyproject.toml").write_text('[tool.sharpedges]\nextend-exclude = ["pkg/bad.py"]\n')
    assert run_cli("check", "pkg").returncode == 0


def test_unknown_config_key_exits_2_naming_key_and_file(run_cli, project):
    (project / "pyproject.toml").write_text('[tool.sharpedges]\nselct = ["SHP101"]\n')
    result = run_cli("check", "pkg")
    assert result.returncode == 2
    assert "unknown key 'selct'" in result.stderr and "pyproject.toml" in result.stderr


def test_unknown_rule_in_config_exits_2(run_cli, project):
    (project / "pyproject.toml").write_text("[tool.sharpedges.rules.SHP998]\nmax-depth = 3\n")
    result = run_cli("check", "pkg")
    assert result.returncode == 2 and "SHP998" in result.stderr


def test_bad_option_value_exits_2(run_cli, project):
    from sharpedges.specs import load_specs

    spec = load_specs()["SHP301"]
    (project / "pyproject.toml").write_text('[tool.sharpedges.rules.SHP301]\nmax-depth = "deep"\n')
    result = run_cli("check", "pkg")
    assert result.returncode == 2 and "option 'max-depth' of SHP301 must be int" in result.stderr
    (project / "pyproject.toml").write_text("[tool.sharpedges.rules.SHP301]\nbogus = 1\n")
    result = run_cli("check", "pkg")
    assert result.returncode == 2 and "unknown option 'bogus' for SHP301" in result.stderr
    (project / "pyproject.toml").write_text("[tool.sharpedges.rules.SHP301]\nmax-depth = 6\n")
    assert run_cli("check", "pkg").returncode == 1  # a valid option is accepted
    assert spec.options["max-depth"].default == 24


def test_invalid_toml_exits_2(run_cli, project):
    (project / "pyproject.toml").write_text("[tool.sharpedges\nselect = [")
    result = run_cli("check", "pkg")
    assert result.returncode == 2 and "invalid TOML" in result.stderr


def test_stdin_filename(run_cli, tmp_path):
    result = run_cli("check", "--stdin-filename", "model.py", "--format", "json", input=UNSCALED)
    document = json.loads(result.stdout)
    assert [d["path"] for d in document["diagnostics"]] == ["model.py"]
    assert result.returncode == 1


def test_gitignore_is_respected(run_cli, project):
    assert run_cli("check", "--no-cache", ".").returncode == 1
    (project / ".gitignore").write_text("pkg/bad.py\n")
    assert run_cli("check", "--no-cache", ".").returncode == 0


def test_exit_code_2_when_a_file_cannot_be_parsed_but_others_are_checked(run_cli, project):
    (project / "pkg" / "broken.py").write_text("def f(:\n    softmax\n")
    result = run_cli("check", "--format", "json", "pkg")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert [d["path"] for d in document["diagnostics"]] == ["pkg/bad.py"]
    (error,) = document["errors"]
    assert error["path"] == "pkg/broken.py" and error["message"].startswith("syntax error at ")


def test_rules_and_rule_commands(run_cli):
    listing = run_cli("rules").stdout
    assert "SHP101" in listing and "attention-missing-scale" in listing
    rows = json.loads(run_cli("rules", "--format", "json").stdout)["rules"]
    assert {"code", "name", "severity", "fix", "default", "precision"} <= set(rows[0])
    doc = run_cli("rule", "shp101").stdout
    for heading in (
        "## What it does",
        "## Why is this bad?",
        "## Example",
        "## Use instead",
        "## References",
        "## Reference implementation",
    ):
        assert heading in doc
    assert (
        doc.index("## What it does")
        < doc.index("## Why is this bad?")
        < doc.index("## Example")
        < doc.index("## Use instead")
        < doc.index("## References")
    )
    unknown = run_cli("rule", "SHP999")
    assert unknown.returncode == 2 and "unknown rule code" in unknown.stderr


def test_python_dash_m_and_console_script_agree(project):
    import shutil
    import subprocess

    script = shutil.which("sharpedges", path=str(Path(sys.executable).parent))
    assert script, "console script not installed"
    a = subprocess.run([script, "check", "pkg"], cwd=project, capture_output=True, text=True)
    b = subprocess.run(
        [sys.executable, "-m", "sharpedges", "check", "pkg"], cwd=project, capture_output=True, text=True
    )
    assert (a.returncode, a.stdout) == (b.returncode, b.stdout)


def test_check_runs_without_torch(project):
    """`import torch` is made to fail; the linter must not need it."""
    import subprocess

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from sharpedges.cli import main\n"
        "rc = main(['check', '--no-cache', 'pkg'])\n"
        "assert sys.modules.get('torch') is None\n"
        "sys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "SHP101" in result.stdout


def test_import_is_cheap():
    import subprocess

    modules = "('torch', 'jinja2', 'pydantic', 'libcst')"
    code = f"import sys, sharpedges; print(sorted(m for m in {modules} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert out == "[]"


def test_a_file_named_several_ways_is_checked_once(run_cli, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.py").write_text(UNSCALED)
    result = run_cli("check", "--format", "json", "--no-cache", "--select", "SHP101", "d", "d/a.py", "./d/a.py")
    document = json.loads(result.stdout)
    assert document["summary"]["files"] == 1
    assert [d["path"] for d in document["diagnostics"]] == ["d/a.py"]
