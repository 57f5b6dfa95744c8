"""The web threads' queue, in order of urgency rather than arrival.

A burst of writes (a thousand `threads.create` and `runs.create` at once)
queues behind the CRONSVC_WEB_THREADS threads of each API process. With a
first-in, first-out queue, the health check and a `crons.count` that arrive
during the burst wait for every write queued before them: seconds, on a
saturated machine. Here each request is queued with a deadline — its arrival
plus its lane's allowance — and a thread takes the earliest deadline:

- `HEALTH` (`/ok`, `/health`, `/info`, `/metrics`) and `READ` (GET, HEAD,
  OPTIONS, and the POST reads: search and count): no allowance, so they
  are taken in their arrival order, never behind a write that came up to
  `WRITE_ALLOWANCE` before them;
- `WRITE` (anything else): `WRITE_ALLOWANCE` seconds. A write that has
  waited that long goes before reads that arrive after, so a flood of reads
  delays writes by at most that, never starves them.

Nothing is dropped or reordered within a lane: a lane's requests keep their
arrival order."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

HEALTH, READ, WRITE = 0, 1, 2
# Seconds a write may be passed by the reads and health checks that come after it.
WRITE_ALLOWANCE = 10.0
_ALLOWANCE = {HEALTH: 0.0, READ: 0.0, WRITE: WRITE_ALLOWANCE}
_HEALTH_PATHS = frozenset({"/ok", "/health", "/info", "/metrics"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def lane_of(method: str, path: str) -> int:
    """The lane of a request, from its method and path."""
    if path.rstrip("/") in _HEALTH_PATHS:
        return HEALTH
    if method in _READ_METHODS or path.endswith(("/search", "/count")):
        return READ
    return WRITE


class LaneExecutor(Executor):
    """`max_workers` threads that run the submitted calls earliest deadline
    first (`submit(fn, *args, lane=...)`); an executor asyncio's
    `run_in_executor` takes too (its calls go in the READ lane)."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "lane") -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # ties (same deadline): arrival order
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0)
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        lane = kwargs.pop("lane", READ)
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            deadline = time.monotonic() + _ALLOWANCE[lane]
            self._queue.put((deadline, next(self._order), future, fn, args, kwargs))
            self._start_thread()
        return future

    def start_all(self) -> None:
        """Every thread now, not at the first requests: starting a thread
        waits until it runs, and a loop that started one during a burst, on
        a saturated machine, stalled for 100-300 ms."""
        with self._lock:
            while len(self._threads) < self._max_workers:
                self._spawn()

    def _start_thread(self) -> None:
        # A new thread unless one is idle (as ThreadPoolExecutor does).
        if self._idle.acquire(blocking=False) or len(self._threads) >= self._max_workers:
            return
        self._spawn()

    def _spawn(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"{self._prefix}_{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        while True:
            _, _, future, fn, args, kwargs = self._queue.get()
            if future is None:  # shutdown
                return
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item[2] is not None:
                    item[2].cancel()
        for _ in threads:  # after every call queued: deadlines never reach infinity
            self._queue.put((float("inf"), next(self._order), None, None, (), {}))
        if wait:
            for thread in threads:
                thread.join()
