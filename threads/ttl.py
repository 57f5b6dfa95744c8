"""Thread TTLs, as the LangGraph Platform takes them.

A thread gets a TTL from `ttl` on `threads.create` or `threads.update`
(`{"strategy": "delete" | "keep_latest", "ttl": minutes}`; the SDKs send a
bare number as `{"strategy": "delete", "ttl": n}`), or, when it is created
without one, from `langgraph.json`'s `checkpointer.ttl` (`strategy`,
`default_ttl` minutes, `sweep_interval_minutes`). It expires `ttl` minutes
after it was set or after the thread's last run was created, whichever is
later (a thread in use does not expire under it), and beat's sweep
(`runs.sweep_ttl`) then applies the strategy: "delete" deletes the thread as
`threads.delete` does, once no run is pending or running on it and no stream
reads it; "keep_latest" prunes its checkpoints to the latest and clears the
expiry until its next run."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

STRATEGIES = ("delete", "keep_latest")
# Ten years: past that a 422, not a date out of range.
MAX_TTL_MINUTES = 10 * 366 * 24 * 60
CONFIG_KEYS = {"strategy", "default_ttl", "sweep_interval_minutes"}


@cache
def config() -> dict[str, Any]:
    """`langgraph.json`'s `checkpointer.ttl` ({} when absent), checked."""
    try:
        with Path(settings.LANGGRAPH_CONFIG).open() as fh:
            checkpointer = json.load(fh).get("checkpointer") or {}
    except OSError:
        return {}
    ttl = checkpointer.get("ttl") if isinstance(checkpointer, dict) else None
    if ttl is None:
        return {}
    problem = None
    if not isinstance(ttl, dict) or set(ttl) - CONFIG_KEYS:
        problem = f"takes only {sorted(CONFIG_KEYS)}"
    elif ttl.get("strategy", "delete") not in STRATEGIES:
        problem = f"strategy must be one of {list(STRATEGIES)}"
    elif not _minutes(ttl.get("default_ttl"), optional=True):
        problem = f"default_ttl must be minutes, more than 0 and at most {MAX_TTL_MINUTES}"
    if problem:
        raise ImproperlyConfigured(f'"checkpointer.ttl" in langgraph.json {problem}')
    return ttl


def _minutes(value: Any, *, optional: bool = False) -> bool:
    if value is None:
        return optional
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 < value <= MAX_TTL_MINUTES
    )


def default() -> tuple[str, float] | None:
    """(strategy, minutes) for a thread created without `ttl`; None: no TTL."""
    ttl = config()
    if ttl.get("default_ttl") is None:
        return None
    return ttl.get("strategy", "delete"), float(ttl["default_ttl"])


def expiry(minutes: float | None, now: datetime) -> datetime | None:
    return None if minutes is None else now + timedelta(minutes=minutes)


def out(thread: Any) -> dict[str, Any] | None:
    """The wire's `ttl` of a thread (`GET /threads/{id}?include=ttl`), None without one."""
    if thread.ttl_minutes is None:
        return None
    return {
        "strategy": thread.ttl_strategy or "delete",
        "ttl_minutes": thread.ttl_minutes,
        "expires_at": thread.expires_at.isoformat() if thread.expires_at else None,
    }
