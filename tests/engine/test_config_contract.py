"""Config errors name the file and the key; every value goes through one schema; configs and the
cache are found where the project is. Each test drives the real CLI (issues 17 and 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.test_cli_check import SCALED, UNSCALED


def _project(root: Path, config: str = "") -> Path:
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    (root / "pkg" / "bad.py").write_text(UNSCALED)
    (root / "pkg" / "good.py").write_text(SCALED)
    if config:
        (root / "pyproject.toml").write_text(config)
    return root


def _config_error(run_cli, tmp_path: Path, config: str) -> str:
    _project(tmp_path, "[tool.sharpedges]\n" + config)
    result = run_cli("check", "--no-cache", "pkg")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(tmp_path / "pyproject.toml") in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "config, key, problem",
    [
        ('select = ["SHP999"]', "'select'", "unknown rule code or prefix 'SHP999'"),
        ('ignore = ["SHP9"]', "'ignore'", "unknown rule code or prefix 'SHP9'"),
        ('extend-select = ["XYZ1"]', "'extend-select'", "'XYZ1' is not a rule code"),
        ('ignore = [""]', "'ignore'", "'' is not a rule code"),
        ('per-file-ignores = {"tests/*" = ["SHP998"]}', "'per-file-ignores'", '"tests/*" unknown rule code'),
        ('per-file-ignores = {"tests/*" = [""]}', "'per-file-ignores'", "'' is not a rule code"),
        ('per-file-ignores = {"tests/*" = ["S"]}', "'per-file-ignores'", "'S' is not a rule code"),
        ("max-file-size = 9223372036854775807", "'max-file-size'", "must be a whole number of bytes"),
        ("max-file-size = true", "'max-file-size'", "got True"),
        ("max-file-size = 0", "'max-file-size'", "must be a whole number of bytes"),
        ('preview = "yes"', "'preview'", "must be true or false"),
        ('cache-dir = "/etc"', "'cache-dir'", "must stay inside the project"),
        ('cache-dir = "../victim"', "'cache-dir'", "must stay inside the project"),
        ('exclude = [""]', "'exclude'", "empty pattern"),
    ],
)
def test_bad_values_name_file_and_key(run_cli, tmp_path, config, key, problem):
    line = _config_error(run_cli, tmp_path, config)
    assert f"[tool.sharpedges] {key}: " in line and problem in line


def test_unknown_rule_table_names_the_code(run_cli, tmp_path):
    line = _config_error(run_cli, tmp_path, "[tool.sharpedges.rules.SHP998]\nmax-depth = 3\n")
    assert "'rules'" in line and "SHP998" in line


def test_deeply_nested_toml_is_one_line(run_cli, tmp_path):
    depth = 10_000
    line = _config_error(run_cli, tmp_path, "select = " + "[" * depth + "]" * depth + "\n")
    assert "invalid TOML" in line


def test_lowercase_codes_in_pyproject_work_like_uppercase(run_cli, tmp_path):
    _project(
        tmp_path, '[tool.sharpedges]\nignore = ["shp101"]\n[tool.sharpedges.per-file-ignores]\n"pkg/*" = ["shp2"]\n'
    )
    result = run_cli("check", "--no-cache", "pkg")
    assert result.returncode == 0, result.stdout + result.stderr


def test_repeated_select_adds_up(run_cli, tmp_path):
    _project(tmp_path)
    only_two = run_cli("check", "--no-cache", "--select", "SHP2", "pkg")
    assert only_two.returncode == 0
    both = run_cli("check", "--no-cache", "--select", "SHP2", "--select", "shp101", "pkg")
    assert both.returncode == 1 and "SHP101" in both.stdout


def test_symlinked_cache_dir_leading_outside_is_refused(run_cli, tmp_path):
    project = _project(tmp_path / "project", '[tool.sharpedges]\ncache-dir = "cache"\n')
    (tmp_path / "victim").mkdir()
    (project / "cache").symlink_to(tmp_path / "victim")
    result = run_cli("check", "pkg", cwd=project)
    assert result.returncode == 2 and "'cache-dir'" in result.stderr and "outside the project" in result.stderr
    assert not any((tmp_path / "victim").iterdir())


def test_unusable_cache_dir_on_the_command_line_is_an_error(run_cli, tmp_path):
    _project(tmp_path)
    (tmp_path / "a-file").write_text("")
    result = run_cli("check", "--cache-dir", "a-file/cache", "pkg")
    assert result.returncode == 2 and "--cache-dir a-file/cache: cannot use it" in result.stderr
    assert "Traceback" not in result.stderr


def test_cache_defaults_to_the_project_root_not_the_cwd(run_cli, tmp_path):
    project = _project(tmp_path, "[tool.sharpedges]\n")
    result = run_cli("check", "bad.py", cwd=project / "pkg")
    assert result.returncode == 1
    assert (project / ".sharpedges_cache").is_dir()
    assert not (project / "pkg" / ".sharpedges_cache").exists()


def test_config_search_stops_at_the_repository_root(run_cli, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.sharpedges]\nignore = ["SHP101"]\n')  # outside the repo
    repo = _project(tmp_path / "repo")
    (repo / ".git").mkdir()
    result = run_cli("check", "--no-cache", "pkg", cwd=repo)
    assert result.returncode == 1 and "SHP101" in result.stdout


def test_each_file_gets_its_nearest_config(run_cli, tmp_path):
    _project(tmp_path, "[tool.sharpedges]\n")
    sub = _project(tmp_path / "sub", '[tool.sharpedges]\nignore = ["SHP101"]\n')
    result = run_cli("check", "--no-cache", "--format", "json", ".")
    paths = {d["path"] for d in json.loads(result.stdout)["diagnostics"]}
    assert paths == {"pkg/bad.py"}, result.stdout
    assert sub.is_dir()


def test_an_explicitly_named_excluded_file_is_said(run_cli, tmp_path):
    _project(tmp_path, '[tool.sharpedges]\nextend-exclude = ["pkg/bad.py"]\n')
    result = run_cli("check", "--no-cache", "pkg/bad.py")
    assert "pkg/bad.py: excluded by the configured exclude patterns, not checked" in result.stderr
    assert result.returncode == 0 and result.stdout == "No Python files checked.\n"


@pytest.mark.parametrize("where", ["extend-exclude", "per-file-ignores", "gitignore"])
def test_backtracking_glob_patterns_finish(run_cli, tmp_path, where):
    pattern = "*a*a*a*a*a*a*a*a*a*a*a*a*ab"
    config = {
        "extend-exclude": f'[tool.sharpedges]\nextend-exclude = ["{pattern}"]\n',
        "per-file-ignores": f'[tool.sharpedges]\nper-file-ignores = {{"{pattern}" = ["SHP101"]}}\n',
        "gitignore": "[tool.sharpedges]\n",
    }[where]
    _project(tmp_path, config)
    if where == "gitignore":
        (tmp_path / ".gitignore").write_text(pattern + "\n")
    (tmp_path / "pkg" / ("a" * 60 + ".py")).write_text(UNSCALED)
    result = run_cli("check", "--no-cache", ".")
    assert result.returncode == 1
    assert f"pkg/{'a' * 60}.py:6:12: SHP101" in result.stdout


@pytest.mark.parametrize("value", [0, -3])
def test_an_option_below_its_minimum_names_the_table_and_key(run_cli, tmp_path, value):
    (tmp_path / "pyproject.toml").write_text(f"[tool.sharpedges.rules.SHP301]\nmax-depth = {value}\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    result = run_cli("check", "model.py")
    assert result.returncode == 2
    assert f"[tool.sharpedges.rules.SHP301] 'max-depth' must be at least 1, got {value}" in result.stderr
    assert "pyproject.toml" in result.stderr


def test_an_unknown_code_in_noqa_is_said_cold_and_warm(run_cli, tmp_path):
    # F401 is another linter's code on a shared `# noqa`: left to it, as ruff leaves flake8 plugins' codes
    (tmp_path / "model.py").write_text("import torch\n\nx = torch.zeros(3)  # noqa: SHP999, shp101, F401\n")
    for _ in range(2):  # the second run reads the cache
        result = run_cli("check", "--cache-dir", "cache", "model.py")
        assert result.returncode == 0
        assert result.stderr == (
            "sharpedges: warning: model.py:3: unknown rule code 'SHP999' in # noqa (see `sharpedges rules`)\n"
        )
