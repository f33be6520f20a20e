"""`[tool.sharpedges]` in the nearest pyproject.toml, validated by one schema: every key, code and
value is checked, and every error names the file and the key."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_EXCLUDE = [
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "__pycache__",
    "build",
    "dist",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".tox",
    ".nox",
    ".sharpedges_cache",
    "*.egg-info",
]
DEFAULT_CACHE_DIR = ".sharpedges_cache"
# A bound far above any source file that still fits the platform's read size (2**63 - 1 overflows it).
MAX_FILE_SIZE_LIMIT = 2**40
_SELECTOR = re.compile(r"SHP\d{0,3}|ALL")


class ConfigError(Exception):
    """A configuration problem; the message names the file and key."""


@dataclass(frozen=True)
class Config:
    path: Path | None = None  # the pyproject.toml it came from
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    extend_exclude: list[str] = field(default_factory=list)
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    preview: bool = False
    cache_dir: str | None = None  # relative to `root`, never outside it
    max_file_size: int | None = None

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def selector_problem(selector: str) -> str | None:
    """Why a rule selector (a code, a prefix like SHP1, or ALL; already upper-cased) selects
    nothing, or None when it is valid."""
    from sharpedges.specs import load_specs

    if not _SELECTOR.fullmatch(selector):
        return f"'{selector}' is not a rule code or prefix (like SHP101, SHP1 or ALL)"
    if selector != "ALL" and not any(code.startswith(selector) for code in load_specs()):
        return f"unknown rule code or prefix '{selector}'"
    return None


def parse_selectors(text: str) -> list[str]:
    """`--select SHP101,shp2` -> ['SHP101', 'SHP2']; raises ValueError naming a bad code."""
    codes = [code.strip().upper() for code in text.split(",") if code.strip()]
    if not codes:
        raise ValueError("expected rule codes or prefixes, e.g. SHP101,SHP2")
    return _selecting(codes)


def _selecting(codes: list[str]) -> list[str]:
    """`codes` when each selects a rule; ValueError naming the first that selects none."""
    for code in codes:
        if problem := selector_problem(code):
            raise ValueError(problem)
    return codes


# --- the schema: one checker per key; each returns the value to keep or raises ValueError -------------


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of strings")
    return value


def _codes(value: Any) -> list[str]:
    return _selecting([code.strip().upper() for code in _string_list(value)])


def _patterns(value: Any) -> list[str]:
    patterns = _string_list(value)
    if any(not pattern.strip() for pattern in patterns):
        raise ValueError("must not contain an empty pattern")
    return patterns


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _file_size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FILE_SIZE_LIMIT:
        raise ValueError(f"must be a whole number of bytes from 1 to {MAX_FILE_SIZE_LIMIT}, got {value!r}")
    return value


def _cache_dir(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty path")
    if os.path.isabs(value) or os.path.normpath(value).split(os.sep)[0] == "..":
        raise ValueError(f"must stay inside the project, got {value!r} (an absolute path only with --cache-dir)")
    return value


def _per_file_ignores(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError("must be a table of pattern = [codes]")
    checked = {}
    for pattern, codes in value.items():
        if not pattern.strip():
            raise ValueError("has an empty pattern")
        try:
            checked[pattern] = _codes(codes)
        except ValueError as exc:
            raise ValueError(f'"{pattern}" {exc}') from None
    return checked


def _rule_options(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("must be tables of options, [tool.sharpedges.rules.<CODE>]")
    from sharpedges.specs import load_specs

    options = {}
    for code, given in value.items():
        if code.upper() not in load_specs():
            raise ValueError(f"unknown rule code '{code}'")
        options[code.upper()] = given
    return options


SCHEMA: dict[str, tuple[str, Callable[[Any], Any]]] = {  # key -> (Config field, checker)
    "select": ("select", _codes),
    "ignore": ("ignore", _codes),
    "extend-select": ("extend_select", _codes),
    "per-file-ignores": ("per_file_ignores", _per_file_ignores),
    "exclude": ("exclude", _patterns),
    "extend-exclude": ("extend_exclude", _patterns),
    "rules": ("rule_options", _rule_options),
    "preview": ("preview", _boolean),
    "cache-dir": ("cache_dir", _cache_dir),
    "max-file-size": ("max_file_size", _file_size),
}


def parse_config(data: dict[str, Any], where: Path) -> Config:
    unknown = sorted(set(data) - set(SCHEMA))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}' in [tool.sharpedges] (known: {', '.join(sorted(SCHEMA))})"
        )
    values = {}
    for key, value in data.items():
        name, check = SCHEMA[key]
        try:
            values[name] = check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: [tool.sharpedges] '{key}': {exc}") from None
    return Config(path=where, **values)


def load_config_file(path: Path) -> Config | None:
    """The [tool.sharpedges] table of one pyproject.toml, or None if it has none."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({exc.reason})") from None
    tool = document.get("tool", {})
    table = tool.get("sharpedges") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.sharpedges] must be a table")
    return parse_config(table, path)


def _is_repository_root(directory: Path) -> bool:
    return (directory / ".git").exists()


@lru_cache(maxsize=1024)
def find_config(start: Path, ceiling: Path | None = None) -> Config:
    """The config of the nearest pyproject.toml with a [tool.sharpedges] table, walking up from
    `start` (a file or directory) and stopping at the repository root (the directory with .git),
    or at `ceiling` (say, the MCP server's root) when that comes first."""
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            config = load_config_file(pyproject)
            if config is not None:
                return config
        if _is_repository_root(candidate) or candidate == ceiling:
            break
    return Config()


@lru_cache(maxsize=1024)
def project_root(start: Path) -> Path:
    """The nearest directory at or above `start` holding pyproject.toml or .git (where the cache
    belongs); `start`'s directory when there is none."""
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        if (candidate / "pyproject.toml").is_file() or _is_repository_root(candidate):
            return candidate
    return directory
