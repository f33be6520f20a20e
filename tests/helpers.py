"""What the detector tests share: the diagnostics of some rules on a snippet, a mutation of a correct
module that must apply, and a small project on disk for the tests that cross files."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sharpedges.diagnostics import Diagnostic
from sharpedges.engine import Engine
from sharpedges.registry import all_rules


def findings(
    codes: str | Iterable[str], source: str, options: dict[str, Any] | None = None, path: str = "model.py"
) -> list[Diagnostic]:
    """The diagnostics of the rules named by `codes` (one code or several) on `source`, dedented;
    `options` are one rule's options over its spec's defaults. A file error fails the test."""
    codes = [codes] if isinstance(codes, str) else list(codes)
    engine = Engine([all_rules()[code] for code in codes], options={code: options or {} for code in codes})
    result = engine.check(path, textwrap.dedent(source).encode())
    assert not result.errors, result.errors
    return result.diagnostics


def mutate(source: str, old: str, new: str) -> str:
    """`source` with `old` replaced by `new`; `old` must be there, or the mutant is the original."""
    assert old in source, old
    return source.replace(old, new)


def write_package(root: Path, modules: dict[str, str]) -> Path:
    """A project at `root`: a `pyproject.toml` that makes it the project root, and a package `pkg` with
    the given modules (name -> source, dedented). Returns `root`."""
    (root / "pyproject.toml").write_text("[tool.sharpedges]\n")
    package = root / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / name).write_text(textwrap.dedent(source))
    return root
