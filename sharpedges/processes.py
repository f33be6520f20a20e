"""The run's processes: bounded in memory, quiet when interrupted, never outliving the run.

- Memory: checking one file may not take more than `memory_limit()` bytes of address space
  (RLIMIT_AS, inherited by the workers); past it the file's check fails with MemoryError and is
  reported as that file's error, and the run goes on.
- Ctrl-C and SIGTERM: the parent kills its workers, prints one line and exits 130 or 143; the
  workers ignore Ctrl-C (the terminal sends it to the whole group) so they print no tracebacks.
- A parent killed outright (SIGKILL) takes its workers with it (Linux's parent-death signal).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_MEMORY_LIMIT_MIB = 4096
_PR_SET_PDEATHSIG = 1


def memory_limit() -> int:
    """Bytes of address space one process may use: SHARPEDGES_MEMORY_LIMIT_MIB, or 4 GiB."""
    try:
        mebibytes = int(os.environ.get("SHARPEDGES_MEMORY_LIMIT_MIB", DEFAULT_MEMORY_LIMIT_MIB))
    except ValueError:
        mebibytes = DEFAULT_MEMORY_LIMIT_MIB
    return max(mebibytes, 256) * 2**20


@contextmanager
def limited_memory(limit: int) -> Iterator[None]:
    try:
        import resource
    except ImportError:  # not on this platform: no limit
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    lowered = soft == resource.RLIM_INFINITY or soft > wanted
    if lowered:
        resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        if lowered:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def worker_started(parent: int) -> None:
    """Pool initializer: ignore Ctrl-C, die quietly on SIGTERM, and die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers still end when the pool's queue closes
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


@contextmanager
def clean_interrupts() -> Iterator[None]:
    """While checking, Ctrl-C and SIGTERM end the run at once with one line, workers and all.
    Raising KeyboardInterrupt instead would surface inside libcst, which turns it into other
    errors and tracebacks."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):  # pragma: no cover - exercised through a subprocess in the tests
        if "multiprocessing" in sys.modules:
            for child in sys.modules["multiprocessing"].active_children():
                child.kill()
        os.write(2, b"sharpedges: interrupted\n" if signum == signal.SIGINT else b"sharpedges: terminated\n")
        os._exit(128 + signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
