"""`[tool.sharpedges]` in the nearest pyproject.toml, validated: unknown keys and codes are errors."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

KNOWN_KEYS = {"select", "ignore", "extend-select", "per-file-ignores", "exclude", "extend-exclude", "rules",
              "preview", "cache-dir", "max-file-size"}
DEFAULT_EXCLUDE = [".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "build", "dist", "node_modules",
                   ".mypy_cache", ".pytest_cache", ".tox", ".nox", ".sharpedges_cache", "*.egg-info"]


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
    cache_dir: str | None = None
    max_file_size: int | None = None

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def _string_list(value: Any, key: str, where: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: [tool.sharpedges] '{key}' must be a list of strings")
    return value


def parse_config(data: dict[str, Any], where: Path) -> Config:
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' in [tool.sharpedges] "
                          f"(known: {', '.join(sorted(KNOWN_KEYS))})")
    per_file = data.get("per-file-ignores", {})
    if not isinstance(per_file, dict):
        raise ConfigError(f"{where}: [tool.sharpedges] 'per-file-ignores' must be a table of pattern = [codes]")
    rules = data.get("rules", {})
    if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
        raise ConfigError(f"{where}: [tool.sharpedges.rules.<CODE>] must be tables of options")
    for key in ("preview",):
        if key in data and not isinstance(data[key], bool):
            raise ConfigError(f"{where}: [tool.sharpedges] '{key}' must be true or false")
    if "max-file-size" in data and not (isinstance(data["max-file-size"], int) and data["max-file-size"] > 0):
        raise ConfigError(f"{where}: [tool.sharpedges] 'max-file-size' must be a positive number of bytes")
    if "cache-dir" in data and not isinstance(data["cache-dir"], str):
        raise ConfigError(f"{where}: [tool.sharpedges] 'cache-dir' must be a string")
    return Config(
        path=where,
        select=_string_list(data["select"], "select", where) if "select" in data else None,
        ignore=_string_list(data.get("ignore", []), "ignore", where),
        extend_select=_string_list(data.get("extend-select", []), "extend-select", where),
        per_file_ignores={pattern: _string_list(codes, f"per-file-ignores.{pattern}", where)
                          for pattern, codes in per_file.items()},
        exclude=_string_list(data.get("exclude", DEFAULT_EXCLUDE), "exclude", where),
        extend_exclude=_string_list(data.get("extend-exclude", []), "extend-exclude", where),
        rule_options=rules,
        preview=data.get("preview", False),
        cache_dir=data.get("cache-dir"),
        max_file_size=data.get("max-file-size"),
    )


def load_config_file(path: Path) -> Config | None:
    """The [tool.sharpedges] table of one pyproject.toml, or None if it has none."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    table = document.get("tool", {}).get("sharpedges")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.sharpedges] must be a table")
    return parse_config(table, path)


@lru_cache(maxsize=256)
def find_config(start: Path) -> Config:
    """The config of the nearest pyproject.toml with a [tool.sharpedges] table, walking up."""
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            config = load_config_file(pyproject)
            if config is not None:
                return config
    return Config()
