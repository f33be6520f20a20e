"""One editor buffer checked exactly as `sharpedges check FILE` checks that file: the nearest
config, its excludes, rules and per-file-ignores, the same engine and limits. Runs in a worker
process (no pygls here), on the worker's main thread, so the runner's time limit applies."""

from __future__ import annotations

import codecs
import tokenize
from io import BytesIO
from pathlib import Path
from typing import Any

from sharpedges.config import Config, ConfigError, find_config
from sharpedges.diagnostics import FileError
from sharpedges.discovery import discover
from sharpedges.fixes import FixRefused, encode_source
from sharpedges.processes import limited_memory, memory_limit, worker_started
from sharpedges.registry import RegistryError
from sharpedges.runner import CheckOptions
from sharpedges.session import check_stdin
from sharpedges.yaml_io import DataFileError

# An editor waits for its diagnostics: a file that takes longer is reported, not checked.
EDITOR_TIME_LIMIT = 15.0
# Reading only: no result cache is written into the user's tree for every keystroke.
OPTIONS = CheckOptions(use_cache=False, time_limit=EDITOR_TIME_LIMIT)


class ConfigsRead:
    """What this process remembers of the pyproject.toml files it read (`find_config` caches them):
    each file's (mtime, size) when read, and the server's count of config changes it has caught up with."""

    def __init__(self) -> None:
        self.stamps: dict[Path, tuple[int, int]] = {}
        self.generation = 0

    def forget(self) -> None:
        """Drop what was read from pyproject.toml files (one changed)."""
        find_config.cache_clear()
        self.stamps.clear()

    def catch_up(self, generation: int) -> None:
        """The server counted `generation` config changes: forget what was read before the last one."""
        if generation != self.generation:
            self.forget()
            self.generation = generation

    def edited_since_read(self, config: Config) -> bool:
        """Whether the file a cached config came from changed on disk (the editor may not say so)."""
        if config.path is None:
            return False
        try:
            info = config.path.stat()
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            return True
        return self.stamps.setdefault(config.path, stamp) != stamp


CONFIGS_READ = ConfigsRead()  # one per worker process: the cache it describes is per process too


def is_excluded(path: Path, config: Config) -> bool:
    """Whether the config's excludes drop this file when named on the command line. A buffer not
    yet saved to disk cannot be matched by `discover` and counts as included."""
    errors: list[FileError] = []
    found = list(discover([str(path)], [*config.exclude, *config.extend_exclude], errors, config.root))
    return not found and not errors


def check_buffer(path: str, text: str, config_generation: int = 0) -> dict[str, Any]:
    """Check the text of the buffer for `path` (absolute). Returns `{"excluded": bool,
    "diagnostics": [Diagnostic JSON], "errors": [FileError JSON]}`; problems reading the config
    or the text are errors, never exceptions."""
    CONFIGS_READ.catch_up(config_generation)
    try:
        data = file_bytes(text)
    except UnicodeEncodeError as exc:
        return _error(path, f"cannot decode: the buffer is not valid Unicode ({exc.reason} at offset {exc.start})")
    except FixRefused as exc:
        return _error(path, f"cannot encode the buffer: {exc}")
    file = Path(path)
    try:
        config = find_config(file.resolve())
        if CONFIGS_READ.edited_since_read(config):
            CONFIGS_READ.forget()
            config = find_config(file.resolve())
        if is_excluded(file, config):
            return {"excluded": True, "diagnostics": [], "errors": []}
        with limited_memory(memory_limit()):
            result = check_stdin(OPTIONS, path, data)
    except (ConfigError, RegistryError, DataFileError, ValueError) as exc:
        return _error(path, f"configuration error, not checked: {exc}")
    except MemoryError:
        return _error(path, f"ran out of memory (limit {memory_limit() // 2**20} MiB), not checked")
    return {
        "excluded": False,
        "diagnostics": [d.to_json() for d in result.diagnostics],
        "errors": [e.to_json() for e in result.errors],
    }


def file_bytes(text: str) -> bytes:
    """The buffer as the bytes its file would hold: UTF-8, unless a coding cookie names another
    encoding (the engine decodes as Python does, so columns then match the buffer's)."""
    data = text.encode("utf-8")
    try:
        encoding, _ = tokenize.detect_encoding(BytesIO(data).readline)
    except SyntaxError:  # an unknown encoding: the engine reports it
        return data
    return data if codecs.lookup(encoding).name.startswith("utf-8") else encode_source(text, encoding)


def _error(path: str, message: str) -> dict[str, Any]:
    return {"excluded": False, "diagnostics": [], "errors": [FileError(path, message).to_json()]}


WARM_UP_SOURCE = (
    "import torch\n\n\ndef attend(q, k, v):\n    return torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v\n"
)


def start_worker(server: int) -> None:
    """Worker initializer: die with the server, and import the detectors, load the specs and run
    each once before the first buffer arrives (a failure there is left for a real check to report)."""
    worker_started(server)
    try:
        check_buffer(str(Path.cwd() / "__sharpedges_warm_up__.py"), WARM_UP_SOURCE)
    except Exception:
        pass
