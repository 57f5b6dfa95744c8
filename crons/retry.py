"""A cron's failure policies, pure: the retry policy's fields and defaults,
their validation, and the backoff before each retry.

A cron-fired run whose attempt ends in `error` or `timeout` is attempted
again, on the same thread from its last checkpoint, while its cron's
`retry_policy` allows (runs.lifecycle); `max_consecutive_failures` pauses the
cron after that many of its runs failed in a row (runs.lifecycle too)."""

from __future__ import annotations

from typing import Any

# Temporal's RetryPolicy defaults (max_interval: 100 x initial_interval
# unless given), except max_attempts: 1 (no retry) keeps LangGraph's behaviour.
DEFAULT_RETRY_POLICY: dict[str, Any] = {
    "max_attempts": 1,
    "initial_interval": 1,
    "backoff_coefficient": 2.0,
    "max_interval": 100,
}
RETRY_POLICY_KEYS = tuple(DEFAULT_RETRY_POLICY)
# Bounds that keep a backoff a date the database can store.
MAX_ATTEMPTS = 1000
MAX_INTERVAL_SECONDS = 366 * 24 * 3600


class InvalidPolicy(ValueError):
    """A retry_policy or max_consecutive_failures that is not valid (the message says why)."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def retry_policy_normalized(policy: Any) -> dict[str, Any] | None:
    """`policy` with the defaults for the keys it leaves out (None: None, the
    default). InvalidPolicy for anything else than an object of the known keys
    with valid values."""
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise InvalidPolicy(f"retry_policy must be an object or null, not {policy!r}")
    unknown = sorted(set(policy) - set(RETRY_POLICY_KEYS))
    if unknown:
        raise InvalidPolicy(
            f"retry_policy has unknown key(s) {unknown}: expected {list(RETRY_POLICY_KEYS)}"
        )
    out = {**DEFAULT_RETRY_POLICY, **policy}
    if "max_interval" not in policy and _number(out["initial_interval"]):
        # As Temporal's: 100 times initial_interval unless given.
        out["max_interval"] = min(100 * out["initial_interval"], MAX_INTERVAL_SECONDS)
    attempts = out["max_attempts"]
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise InvalidPolicy(
            f"retry_policy.max_attempts must be a positive integer, not {attempts!r}"
        )
    if attempts > MAX_ATTEMPTS:
        raise InvalidPolicy(f"retry_policy.max_attempts must be at most {MAX_ATTEMPTS}")
    for key in ("initial_interval", "max_interval"):
        value = out[key]
        if not _number(value) or not 0 < value <= MAX_INTERVAL_SECONDS:
            raise InvalidPolicy(
                f"retry_policy.{key} must be a positive number of seconds (at most "
                f"{MAX_INTERVAL_SECONDS}), not {value!r}"
            )
    coefficient = out["backoff_coefficient"]
    if not _number(coefficient) or not 1 <= coefficient <= 1000:
        raise InvalidPolicy(
            f"retry_policy.backoff_coefficient must be a number from 1 to 1000, not {coefficient!r}"
        )
    return out


def retry_policy_of(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The policy a cron applies: the stored one, or the default (no retry)."""
    return {**DEFAULT_RETRY_POLICY, **(stored or {})}


def retry_backoff(policy: dict[str, Any], retry: int) -> float:
    """Seconds to wait before retry number `retry` (1: the first):
    initial_interval * backoff_coefficient^(retry-1), at most max_interval."""
    cap = float(policy["max_interval"])
    try:
        delay = float(policy["initial_interval"]) * float(policy["backoff_coefficient"]) ** (
            retry - 1
        )
    except OverflowError:
        return cap
    return min(delay, cap)


def max_consecutive_failures_valid(value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InvalidPolicy(
            f"max_consecutive_failures must be a positive integer or null, not {value!r}"
        )
