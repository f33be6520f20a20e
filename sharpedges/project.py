"""Phase one of checking a project: each file's summary (`sharpedges.analysis.project.FACTS`),
computed once per content, kept in memory for the run and, with a cache, on disk.

Phase two is the ordinary check of each file, whose `ProjectScope` loads summaries from here on
demand: a one-file check (pre-commit, stdin, the editor) computes what it needs, a directory
check shares the work across its files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from sharpedges.analysis.project import (
    ProjectScope,
    folder_digest,
    is_folder_key,
    is_mention_key,
    mention_digest,
    summarize,
)


class SummaryStore:
    def __init__(self, fingerprint: str, max_bytes: int, directory: Path | None = None) -> None:
        self.fingerprint = fingerprint
        self.max_bytes = max_bytes
        self.directory = directory
        self._memo: dict[str, tuple[str, dict[str, Any]] | None] = {}

    def load(self, path: Path) -> tuple[str, dict[str, Any]] | None:
        """(digest, summary) of the file as it is now, or None when it cannot be read or parsed."""
        try:
            with open(path, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None
                data = handle.read(self.max_bytes + 1)
        except OSError:
            return None
        if len(data) > self.max_bytes:
            return None
        key = hashlib.sha256(self.fingerprint.encode() + b"\0" + data).hexdigest()
        if key not in self._memo:
            self._memo[key] = self._read(key) or self._compute(key, path, data)
        return self._memo[key]

    def digest(self, path: str) -> str | None:
        if is_folder_key(path):
            return folder_digest(Path(path))
        if is_mention_key(path):
            return mention_digest(path)
        loaded = self.load(Path(path))
        return loaded[0] if loaded else None

    def _compute(self, key: str, path: Path, data: bytes) -> tuple[str, dict[str, Any]] | None:
        from sharpedges.analysis.context import FileContext
        from sharpedges.engine import parse_module, python_refusal

        if b"\0" in data or python_refusal(data) is not None:
            return None
        try:
            # the lowered bytes, as the engine gives them: else FileContext regenerates the module's code
            summary = summarize(FileContext(str(path), parse_module(data), data.lower()))
        except Exception:  # a file we cannot summarise is simply unknown to its importers
            return None
        body = json.dumps(summary, sort_keys=True).encode()
        digest = hashlib.sha256(body).hexdigest()
        self._write(key, digest, body)
        return digest, summary

    def _file(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / key[:2] / f"{key}.json"

    def _read(self, key: str) -> tuple[str, dict[str, Any]] | None:
        file = self._file(key)
        if file is None:
            return None
        try:
            digest, _, body = file.read_bytes().partition(b"\n")
            if hashlib.sha256(body).hexdigest().encode() != digest:
                return None
            summary = json.loads(body)
        except (OSError, ValueError):
            return None
        return (digest.decode(), summary) if isinstance(summary, dict) else None

    def _write(self, key: str, digest: str, body: bytes) -> None:
        file = self._file(key)
        if file is None:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(os.lstat(file.parent).st_mode):
                return
            descriptor, temporary = tempfile.mkstemp(dir=file.parent, prefix=".tmp-")
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(digest.encode() + b"\n" + body)
            os.replace(temporary, file)
        except OSError:
            pass  # a summary that cannot be cached only costs speed


class ProjectScopes:
    """Makes the `ProjectScope` of each file an engine checks: the project's roots, one store."""

    def __init__(self, roots: tuple[Path, ...], store: SummaryStore) -> None:
        self.roots = tuple(root.resolve() for root in roots)
        self.store = store
        self.real_paths: dict[Path, Path] = {}  # each path resolved once per run: a run builds its engine

    def __call__(self, path: str) -> ProjectScope:
        return ProjectScope(Path(os.path.abspath(path)), self.roots, self.store.load, real_paths=self.real_paths)
