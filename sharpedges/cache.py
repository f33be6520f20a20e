"""A content-keyed result cache: one small JSON file per (file content, linter code, rules, options).

Entries are written atomically (temp file + rename), so two concurrent runs never see half an
entry; an entry that fails to parse or has the wrong shape is ignored, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from sharpedges import __version__

FORMAT = 1


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Changes whenever any file of the linter (engine, detectors, rule specs) changes."""
    import sharpedges
    import sharpedges.detectors
    import sharpedges.rules

    digest = hashlib.sha256(__version__.encode())
    for package in (sharpedges, sharpedges.detectors, sharpedges.rules):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
                info = path.stat()
                digest.update(f"{path.relative_to(root)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()


class ResultCache:
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
            entry = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("diagnostics"), list) \
                or not isinstance(entry.get("errors"), list):
            return None
        return entry

    def put(self, key: str, diagnostics: list[dict], errors: list[dict]) -> None:
        path = self._path(key)
        try:
            self._prepare(path.parent)
            payload = json.dumps({"key": key, "diagnostics": diagnostics, "errors": errors})
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(payload)
            os.replace(temporary, path)
        except OSError:
            pass  # a cache that cannot be written only costs speed

    def _prepare(self, directory: Path) -> None:
        if not self._ready:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# created by sharpedges\n*\n", encoding="utf-8")
            self._ready = True
        directory.mkdir(parents=True, exist_ok=True)
