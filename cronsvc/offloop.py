"""The one bounded executor for blocking work the async views do (ORM calls,
services): CRONSVC_OFFLOOP_THREADS threads per process, each keeping its own
database connection, so an API process holds at most that many connections for
its async views however many requests wait.

`await offloop.run(fn, *args)` runs `fn` on it. The event loop itself never
touches the database."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.CRONSVC_OFFLOOP_THREADS, thread_name_prefix="offloop"
            )
        return _executor


def start_all() -> None:
    """Every thread of the executor now (the API's start), not one by one as
    the first requests come: ThreadPoolExecutor starts a thread inside
    `submit`, on the event loop, and waits until it runs; during a burst on a
    saturated machine that stalled the loop for 100-300 ms a thread. Each
    thread waits at the barrier, so none is idle when the next is asked."""
    pool, size = executor(), settings.CRONSVC_OFFLOOP_THREADS
    started = threading.Barrier(size + 1)
    for _ in range(size):
        pool.submit(started.wait, 30)
    started.wait(30)


async def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` on the executor; its result or its exception. It
    runs in a copy of the caller's context, so what the request set there (the
    custom-auth user, cronsvc.custom_auth) holds in `fn` too."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(
        executor(), functools.partial(context.run, _call, fn, args, kwargs)
    )


def submit(fn: Callable[..., object], *args: object) -> None:
    """`fn(*args)` on the executor, not waited for (work that must happen even
    when the request that asked for it is being cancelled). Nobody awaits it, so
    its failure is logged here rather than lost."""
    future = executor().submit(contextvars.copy_context().run, _call, fn, args, {})
    future.add_done_callback(functools.partial(_log_failure, fn))


def _log_failure(fn: Callable[..., object], future: Future) -> None:
    if (exc := future.exception()) is not None:
        log.error("%s failed off the loop", getattr(fn, "__qualname__", fn), exc_info=exc)


def _call(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        # The thread's connection is kept for its next call, unless it broke.
        for conn in connections.all(initialized_only=True):
            if conn.connection is not None and conn.errors_occurred and not conn.is_usable():
                conn.close()
