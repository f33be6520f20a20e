"""Runs the engine over many files: discovery, config per path, cache, processes, time limits.

Data flows one way: paths -> discovery -> (cache | byte screen -> parse -> detectors) -> results.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sharpedges.cache import ResultCache, code_fingerprint
from sharpedges.config import DEFAULT_CACHE_DIR, Config, ConfigError, find_config, project_root
from sharpedges.diagnostics import Diagnostic, FileError, FileResult
from sharpedges.discovery import discover, exclusion_test
from sharpedges.engine import DEFAULT_MAX_BYTES, Engine
from sharpedges.processes import clean_interrupts, limited_memory, memory_limit, worker_started
from sharpedges.project import ProjectScopes, SummaryStore
from sharpedges.specs import validate_options
from sharpedges.suppression import per_file_ignored, select_rules

DEFAULT_TIME_LIMIT = 60.0


@dataclass
class CheckOptions:
    paths: list[str] = field(default_factory=lambda: ["."])
    select: list[str] | None = None
    extend_select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    preview: bool = False
    use_cache: bool = True
    cache_dir: str | None = None
    jobs: int | None = None
    shard: tuple[int, int] | None = None  # (K, N), 1-based K
    screen: bool = field(default_factory=lambda: os.environ.get("SHARPEDGES_NO_SCREEN") != "1")
    time_limit: float = DEFAULT_TIME_LIMIT
    progress: Callable[[int, int], None] | None = None


@dataclass
class RunResult:
    diagnostics: list[Diagnostic]
    errors: list[FileError]
    files: int
    checked: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the bytes checked
    warnings: list[str] = field(default_factory=list)  # said on stderr; they change no exit code


@dataclass(frozen=True)
class _Task:
    index: int
    display: str
    path: str
    engine: int  # index into the engines built for the run


class FileTimeout(BaseException):
    """Raised by the alarm when one file takes longer than the time limit (BaseException so no
    detector's `except Exception` can swallow it)."""


def build_engine(config: Config, options: CheckOptions, roots: tuple[Path, ...] = ()) -> Engine:
    """The rules and options a config and the command line select (raises on unknown codes/options).
    Imports resolve inside the config's root and `roots` (the projects of the paths being checked)."""
    select = options.select if options.select is not None else config.select
    rules = select_rules(
        select,
        [*config.extend_select, *options.extend_select],
        [*config.ignore, *options.ignore],
        preview=options.preview or config.preview,
    )
    by_code = {rule.code: rule for rule in rules}
    where = str(config.path) if config.path else "command line"
    from sharpedges.registry import all_rules

    rule_options = {}
    for code, given in config.rule_options.items():
        if code not in all_rules():
            raise ValueError(f"{where}: [tool.sharpedges.rules.{code}]: unknown rule code {code}")
        rule_options[code] = validate_options(all_rules()[code].spec, given, where)
    options_for = {code: rule_options.get(code, rule.spec.option_defaults()) for code, rule in by_code.items()}
    engine = Engine(rules, options_for, screen=options.screen, max_bytes=config.max_file_size or DEFAULT_MAX_BYTES)
    engine.project = ProjectScopes(
        tuple(dict.fromkeys((config.root, *roots))), SummaryStore(code_fingerprint(), engine.max_bytes)
    )
    return engine


def engine_key(engine: Engine) -> str:
    roots = [str(root) for root in engine.project.roots] if engine.project is not None else []
    payload = json.dumps(
        {
            "code": code_fingerprint(),
            "rules": engine.options,
            "screen": engine.screen,
            "max": engine.max_bytes,
            "roots": roots,  # which files a check may read the summaries of
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def read_source(path: str, max_bytes: int) -> bytes | str:
    """The file's bytes, or a one-line reason it cannot be read. Never opens a FIFO or device."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return (
            "cannot read: symlink loop"
            if exc.errno == errno.ELOOP
            else f"cannot read: {(exc.strerror or str(exc)).lower()}"
        )
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (FIFO, device or socket), not checked"
    if info.st_size > max_bytes:
        return f"file too large ({info.st_size / 2**20:.1f} MiB > {max_bytes / 2**20:.0f} MiB limit), not checked"
    try:
        with open(path, "rb") as handle:
            return handle.read(max_bytes + 1)
    except OSError as exc:
        return f"cannot read: {(exc.strerror or str(exc)).lower()}"


def _on_alarm(signum, frame):  # pragma: no cover - exercised through the time-limit test
    raise FileTimeout()


def check_source(engine: Engine, display: str, data: bytes, time_limit: float) -> FileResult:
    """Run the engine on one file's bytes under a time limit."""
    use_alarm = time_limit > 0 and hasattr(signal, "setitimer") and _is_main_thread()
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        return engine.check(display, data)
    except FileTimeout:
        where = f" in {engine.current_rule}" if engine.current_rule else ""
        return FileResult(
            errors=[FileError(display, f"timed out after {time_limit:g} s{where}, not checked", engine.current_rule)],
            timed_out=True,
        )
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# (task index, diagnostics and errors as JSON, sha256 of the bytes checked or "", warnings): plain
# data, as it crosses from a worker process and comes out of the cache.
TaskResult = tuple[int, list[dict], list[dict], str, list[str]]


@dataclass(frozen=True)
class RunState:
    """What checking one task of a run needs: the run's engines, the cache of each, the time limit.
    Handed to each worker process once, by the pool's initializer."""

    engines: list[Engine]
    caches: list[ResultCache | None]
    time_limit: float

    def check(self, task: _Task) -> TaskResult:
        engine = self.engines[task.engine]
        data = read_source(task.path, engine.max_bytes)
        if isinstance(data, str):
            return task.index, [], [FileError(task.display, data).to_json()], "", []
        digest = hashlib.sha256(data).hexdigest()
        cache = self.caches[task.engine]
        key = cache.key(data) if cache is not None else ""
        if cache is not None and (entry := cache.get(key)) is not None and _deps_hold(engine, entry["deps"]):
            diagnostics = [{**d, "path": task.display} for d in entry["diagnostics"]]
            errors = [{**e, "path": task.display} for e in entry["errors"]]
            return (
                task.index,
                diagnostics,
                errors,
                digest,
                [w.replace("\0", task.display, 1) for w in entry["warnings"]],
            )
        try:
            result = check_source(engine, task.display, data, self.time_limit)
        except MemoryError:
            limit = memory_limit() // 2**20
            return (
                task.index,
                [],
                [FileError(task.display, f"ran out of memory (limit {limit} MiB), not checked").to_json()],
                digest,
                [],
            )
        diagnostics = [d.to_json() for d in result.diagnostics]
        errors = [e.to_json() for e in result.errors]
        if cache is not None and not result.timed_out:
            cache.put(
                key,
                [{**d, "path": ""} for d in diagnostics],
                [{**e, "path": ""} for e in errors],
                result.deps,
                [w.replace(task.display, "\0", 1) for w in result.warnings],
            )
        return task.index, diagnostics, errors, digest, result.warnings


class _Worker:
    """This process's part in a run when it is one of the pool's workers."""

    state: RunState | None = None


def _start_worker(parent: int, state: RunState) -> None:
    """Pool initializer: the worker's signals and parent (`worker_started`), then its run state."""
    worker_started(parent)
    _Worker.state = state


def _check_in_worker(task: _Task) -> TaskResult:
    if _Worker.state is None:
        raise RuntimeError("a worker checked a task before the pool gave it its run state")
    return _Worker.state.check(task)


def _jobs(requested: int | None, tasks: int) -> int:
    """Processes for the run: as asked, but never more than the cores or the files."""
    if requested is not None and requested < 1:
        raise ValueError(f"--jobs must be at least 1, not {requested}")
    cores = os.cpu_count() or 1
    return max(1, min(requested or cores, cores, tasks))


def _run_tasks(state: RunState, tasks: list[_Task], jobs: int, progress) -> list[TaskResult]:
    results = []
    use_pool = jobs > 1 and len(tasks) > 8
    if use_pool:
        import multiprocessing  # only a run over many files pays for it

        use_pool = "fork" in multiprocessing.get_all_start_methods()
    if use_pool:
        context = multiprocessing.get_context("fork")
        chunksize = max(1, min(16, len(tasks) // (jobs * 8)))
        # forked, the workers inherit the state as it is: the initializer's arguments are not pickled
        with context.Pool(jobs, initializer=_start_worker, initargs=(os.getpid(), state)) as pool:
            for done, item in enumerate(pool.imap_unordered(_check_in_worker, tasks, chunksize=chunksize), 1):
                results.append(item)
                if progress:
                    progress(done, len(tasks))
    else:
        for done, task in enumerate(tasks, 1):
            results.append(state.check(task))
            if progress:
                progress(done, len(tasks))
    return results


def _deps_hold(engine: Engine, deps: dict[str, str]) -> bool:
    """Whether every project summary a cached result read is still the same."""
    project = engine.project
    return all(project is not None and project.store.digest(path) == digest for path, digest in deps.items())


def in_shard(display: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    k, n = shard
    return int(hashlib.sha1(display.encode()).hexdigest(), 16) % n == k - 1


def _command_line_cache_dir(options: CheckOptions) -> Path | None:
    """`--cache-dir`, created if need be; raises ValueError when it cannot be used."""
    if options.cache_dir is None:
        return None
    directory = Path(options.cache_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"--cache-dir {options.cache_dir}: cannot use it: {(exc.strerror or str(exc)).lower()}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"--cache-dir {options.cache_dir}: cannot use it: not writable")
    return directory


def _configured_cache_dir(config: Config) -> Path | None:
    """The config's `cache-dir`, which must stay inside the project (symlinks resolved)."""
    if config.cache_dir is None:
        return None
    directory = config.root / config.cache_dir
    if not directory.resolve().is_relative_to(config.root.resolve()):
        raise ConfigError(
            f"{config.path}: [tool.sharpedges] 'cache-dir': {config.cache_dir!r} leads outside "
            f"the project (an outside cache only with --cache-dir)"
        )
    return directory


@contextmanager
def _frozen_for_the_run() -> Iterator[None]:
    """Everything built before the files are checked (modules, specs, rules, engines) lives for the
    whole run: kept out of the collector's full passes, which otherwise scan it all again every few
    files (2.3 s of a 31 s check of a quarter of the pinned corpus). Forked workers inherit it."""
    if gc.get_freeze_count():  # someone else froze the heap: leave their choice alone
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_check(options: CheckOptions) -> RunResult:
    """Check every file under `options.paths`. Raises ConfigError / RegistryError / ValueError
    for configuration problems (exit 2 before any file is read)."""
    errors: list[FileError] = []
    engines: list[Engine] = []
    caches: list[ResultCache | None] = []
    configs: list[Config] = []
    engine_of_config: dict[str, int] = {}  # by value: `find_config` makes a fresh default Config per folder
    tasks: list[_Task] = []
    notices: list[str] = []
    command_line_cache = _command_line_cache_dir(options) if options.use_cache else None
    # the project of every path checked: a file outside the config's root still sees its own package
    checked_roots = tuple(dict.fromkeys(project_root(Path(os.path.abspath(argument))) for argument in options.paths))

    stores: dict[int, SummaryStore] = {}  # one per file-size limit: the summaries every engine of the run reads

    def engine_slot(config: Config, first_file: Path) -> int:
        slot = engine_of_config.get(repr(config))
        if slot is None:
            engine = build_engine(config, options, checked_roots)
            if engine.project is not None:  # a folder's own config must not summarise the package again
                engine.project.store = stores.setdefault(engine.max_bytes, engine.project.store)
            slot = engine_of_config[repr(config)] = len(engines)
            engines.append(engine)
            configs.append(config)
            if options.use_cache:
                directory = (
                    command_line_cache or _configured_cache_dir(config) or project_root(first_file) / DEFAULT_CACHE_DIR
                )
                caches.append(ResultCache(directory, engine_key(engine)))
            else:
                caches.append(None)
        return slot

    exclusion_tests: dict[int, Callable[[Path, bool], bool]] = {}

    def excluded_by_own_config(config: Config, path: Path) -> bool:
        if id(config) not in exclusion_tests:
            exclusion_tests[id(config)] = exclusion_test([*config.exclude, *config.extend_exclude], config.root)[1]
        return exclusion_tests[id(config)](path, False)

    checked_files: set[str] = set()  # a file named several ways (`d`, `d/a.py`, `./d/a.py`) is checked once
    for argument in options.paths:
        argument_config = find_config(Path(os.path.abspath(argument)))
        engine_slot(argument_config, Path(os.path.abspath(argument)))  # config errors before any file is read
        exclude = [*argument_config.exclude, *argument_config.extend_exclude]
        for candidate in discover([argument], exclude, errors, argument_config.root, notices=notices):
            absolute = Path(os.path.abspath(candidate.path))
            if (real := os.path.realpath(absolute)) in checked_files:
                continue
            checked_files.add(real)
            config = find_config(absolute.parent)  # the nearest config of each file, not of the argument
            if config is not argument_config and excluded_by_own_config(config, absolute):
                continue
            if in_shard(candidate.display, options.shard):
                tasks.append(_Task(len(tasks), candidate.display, str(candidate.path), engine_slot(config, absolute)))
    for notice in notices:
        print(f"sharpedges: warning: {notice}", file=sys.stderr)

    for engine, cache in zip(engines, caches, strict=False):  # summaries are shared by the run's files, and cached
        if cache is not None and engine.project is not None:
            engine.project.store.directory = cache.summaries_directory()
    state = RunState(engines, caches, options.time_limit)
    with clean_interrupts(), limited_memory(memory_limit()), _frozen_for_the_run():
        results = _run_tasks(state, tasks, _jobs(options.jobs, len(tasks)), options.progress)

    diagnostics: list[Diagnostic] = []
    checked: dict[str, str] = {}
    warnings: list[str] = []
    for index, found, problems, digest, said in results:
        warnings += said
        config = configs[tasks[index].engine]
        diagnostics.extend(d for d in map(Diagnostic.from_json, found) if not per_file_ignored(config, d))
        errors.extend(FileError(**e) for e in problems)
        if digest:
            checked[tasks[index].display] = digest
    diagnostics.sort(key=Diagnostic.sort_key)
    errors.sort(key=lambda e: (e.path, e.message))
    return RunResult(diagnostics, errors, len(tasks), checked, sorted(warnings))


def stderr_progress() -> Callable[[int, int], None] | None:
    """A progress line on stderr for runs over ~2 s, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        if time.monotonic() - started < 2.0:
            return
        end = "\n" if done == total else ""
        sys.stderr.write(f"\rsharpedges: checked {done}/{total} files{end}")
        sys.stderr.flush()

    return report
