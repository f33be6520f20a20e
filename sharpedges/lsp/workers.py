"""Worker processes that check buffers, so the event loop never waits on a check: a slow file
holds one worker until the time limit while the other answers, and a crashed or stuck worker is
replaced instead of taking the server down."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sharpedges.lsp.checking import EDITOR_TIME_LIMIT, check_buffer, start_worker

# The time limit is enforced inside the worker (the runner's alarm); this much longer, the worker
# is taken to be stuck where no alarm can reach it (native code) and is killed.
KILL_AFTER = EDITOR_TIME_LIMIT + 5.0


class CheckFailed(Exception):
    """The check of a buffer produced no result; the message says why, in one line."""


def _kill(executor: ProcessPoolExecutor) -> None:
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.kill()
    executor.shutdown(wait=False, cancel_futures=True)


class CheckWorkers:
    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.config_generation = 0  # bumped when a pyproject.toml changes; workers then re-read
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: the server runs threads, and a fork would copy their locks mid-use.
            self._executor = ProcessPoolExecutor(
                self.count,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,
                initargs=(os.getpid(),),
            )
        return self._executor

    def start(self) -> None:
        """Start (and warm) every worker now rather than on the first keystroke."""
        pool = self._pool()
        for _ in range(self.count):
            pool.submit(os.getpid)

    def config_changed(self) -> None:
        self.config_generation += 1

    async def check(self, path: str, text: str) -> dict[str, Any]:
        """`checking.check_buffer` in a worker. A worker that dies is replaced and the check tried
        once more; raises CheckFailed when there is still no result."""
        attempts = 2
        while True:
            attempts -= 1
            pool = self._pool()
            future = pool.submit(check_buffer, path, text, self.config_generation)
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), KILL_AFTER)
            except BrokenProcessPool:  # this file's check or another's killed a worker
                self._discard(pool)
                if not attempts:
                    raise CheckFailed("the checking process died on this file (twice), not checked") from None
            except TimeoutError:
                self._discard(pool)
                raise CheckFailed(
                    f"the check did not finish in {KILL_AFTER:g} s and was stopped, not checked"
                ) from None

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        """Kill `pool` if it is still the current one (a check that failed with an older pool must
        not take down its replacement)."""
        if self._executor is pool:
            _kill(pool)
            self._executor = None

    def close(self) -> None:
        """Stop every worker now: a check in progress is abandoned, not awaited."""
        if self._executor is not None:
            self._discard(self._executor)
