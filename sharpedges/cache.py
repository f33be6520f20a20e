"""A content-keyed result cache: one small JSON file per (file content, linter code, rules, options).

Entries are written atomically (temp file + rename), so two concurrent runs never see half an
entry; an entry whose digest, parse or shape is wrong is a miss, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from sharpedges import __version__

FORMAT = 4  # 2: a digest line before each entry's body; 3: the project summaries it read; 4: warnings
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Changes whenever any file of the linter (engine, detectors, rule specs) changes."""
    import sharpedges
    import sharpedges.detectors
    import sharpedges.rules

    digest = hashlib.sha256(__version__.encode())
    for package in (sharpedges, sharpedges.detectors, sharpedges.rules):
        root = Path(package.__path__[0])
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                info = path.stat()
                digest.update(f"{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()


DIAGNOSTIC_FIELDS = {
    "rule": str,
    "name": str,
    "severity": str,
    "path": str,
    "line": int,
    "column": int,
    "end_line": int,
    "end_column": int,
    "message": str,
    "help": str,
}
RELATED_FIELDS = {"path": str, "line": int, "column": int, "end_line": int, "end_column": int, "message": str}
EDIT_FIELDS = {"line": int, "column": int, "end_line": int, "end_column": int, "content": str, "original": str}


def _typed(data: Any, fields: dict[str, type], optional: frozenset[str] = frozenset()) -> bool:
    """`data` is a dict with every field of `fields` but the optional ones, no others, each of
    its exact type (`object`: any)."""
    return (
        isinstance(data, dict)
        and set(fields) - optional <= set(data) <= set(fields)
        and all(kind is object or type(data[name]) is kind for name, kind in fields.items() if name in data)
    )


def _valid_fix(fix: Any) -> bool:
    return fix is None or (
        isinstance(fix, dict)
        and set(fix) == {"applicability", "edits"}
        and fix["applicability"] in ("safe", "unsafe")
        and isinstance(fix["edits"], list)
        and all(_typed(edit, EDIT_FIELDS) for edit in fix["edits"])
    )


def valid_entry(entry: Any, key: str) -> bool:
    """Whether a cache entry has exactly the shape this version writes."""
    return (
        isinstance(entry, dict)
        and set(entry) == {"key", "diagnostics", "errors", "deps", "warnings"}
        and entry["key"] == key
        and isinstance(entry["warnings"], list)
        and all(type(w) is str for w in entry["warnings"])
        and isinstance(entry["deps"], dict)
        and all(type(k) is str and type(v) is str for k, v in entry["deps"].items())
        and isinstance(entry["diagnostics"], list)
        and isinstance(entry["errors"], list)
        and all(
            _typed(d, {**DIAGNOSTIC_FIELDS, "fix": object, "related": list}, frozenset({"fix", "related"}))
            and _valid_fix(d.get("fix"))
            and all(_typed(r, RELATED_FIELDS, frozenset({"path"})) for r in d.get("related", []))
            for d in entry["diagnostics"]
        )
        and all(_typed(e, {"path": str, "message": str, "rule": str}, frozenset({"rule"})) for e in entry["errors"])
    )


class ResultCache:
    """Entries are data, not trust: each is stored with a digest of its body and checked against
    this version's shape on every read; anything else is a miss. Fix edits are never taken from
    it (`--fix` recomputes them). The directory itself must be trusted: whoever can write to it
    can recompute a digest."""

    def __init__(self, directory: Path, engine_key: str) -> None:
        self.directory = directory
        self.engine_key = engine_key
        self._ready = False

    def key(self, data: bytes) -> str:
        return hashlib.sha256(self.engine_key.encode() + b"\0" + data).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / f"v{FORMAT}" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            digest, _, body = self._path(key).read_bytes().partition(b"\n")
            if hashlib.sha256(body).hexdigest().encode() != digest:
                return None
            entry = json.loads(body)
        except (OSError, ValueError):
            return None
        return entry if valid_entry(entry, key) else None

    def summaries_directory(self) -> Path:
        """Where the project summaries live (`sharpedges.project.SummaryStore`)."""
        return self.directory / f"v{FORMAT}" / "summaries"

    def put(
        self,
        key: str,
        diagnostics: list[dict],
        errors: list[dict],
        deps: dict[str, str] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        """Store a result; `deps` are the project summaries it read (file -> digest)."""
        path = self._path(key)
        try:
            if not self._prepare(path.parent):
                return
            body = json.dumps(
                {
                    "key": key,
                    "diagnostics": diagnostics,
                    "errors": errors,
                    "deps": deps or {},
                    "warnings": warnings or [],
                }
            ).encode()
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
            os.replace(temporary, path)  # rename never follows a symlink at `path`: it replaces it
        except OSError:
            pass  # a cache that cannot be written only costs speed

    def _prepare(self, directory: Path) -> bool:
        """Create the cache's folders, refusing any that is a symlink (it would redirect writes)."""
        if not self._ready:
            self.directory.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(
                    self.directory / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW, 0o644
                )
            except FileExistsError:  # already there (or a planted link, which is never followed)
                pass
            else:
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write("# created by sharpedges\n*\n")
            self._ready = True
        for folder in (directory.parent, directory):
            try:
                folder.mkdir(exist_ok=True)
                if stat.S_ISLNK(os.lstat(folder).st_mode):
                    return False
            except OSError:
                return False
        return True
