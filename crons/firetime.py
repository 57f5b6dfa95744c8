"""Fire-time authority for cron schedules.

This module is the single place that decides *when* a cron fires.  The API
(``next_run_date``) and the beat scheduler both call it, so they can never
disagree.  It is pure Python (``croniter`` + ``zoneinfo``) and must not import
Django.

The rule
========

A schedule is a cron expression evaluated against the **wall clock** of the
cron's IANA timezone.  Which wall times match is decided by ``croniter``
(including its day-of-month / day-of-week *OR* semantics when both fields are
restricted, ``L`` and ``#``).  Those wall times are then mapped to real
instants with the Linux ``cronie`` daemon's DST rule:

* A **wildcard** job is one whose minute field or hour field starts with ``*``
  (cronie's ``MIN_STAR`` / ``HR_STAR``), e.g. ``*/20 1 * * *``,
  ``0 */2 * * *``, ``@hourly`` (= ``0 * * * *``), ``* * * * *``.  It runs in
  real time: on a fall-back day every wall time of the repeated hour fires
  twice (once per UTC offset); on a spring-forward day wall times that do not
  exist do not fire at all.

* Every other job is a **fixed wall time** job.  It fires once per matching
  wall time: an ambiguous wall time (fall-back) fires only at its first
  occurrence (``fold=0``); a wall time inside a gap (spring-forward) fires at
  the first instant after the gap, and several wall times collapsing onto that
  instant fire once.

On days without a transition this is exactly croniter's output.  croniter's
own DST handling is *not* used (it would fire ``30 1 * * *`` twice on a
fall-back day, fire ``*/20 2 * * *`` once at 03:00 on a spring-forward day and
invent a 03:00 fire for ``0 */2 * * *``); croniter is only asked for naive
wall times, and this module maps them to instants itself.

Accepted syntax
===============

* 5 fields ``minute hour day-of-month month day-of-week``.
* 6 fields: croniter 7's default (``second_at_beginning=False``) puts the
  **seconds field last**: ``minute hour day-of-month month day-of-week
  second``.  So ``* * * * * */10`` fires every 10 seconds, whereas
  ``*/10 * * * * *`` fires every second of minutes 0, 10, 20, ...
* Aliases ``@hourly @daily @midnight @weekly @monthly @yearly @annually``
  (case-insensitive).
* Names (``jan``, ``mon``), ranges, steps, lists, ``L`` (last day of month,
  or ``L5`` = last Friday in the day-of-week field), ``#`` (``5#2`` = second
  Friday), ``?`` (same as ``*``), ``W`` (nearest weekday) — whatever croniter
  accepts, except:
* A restricted day-of-month and a restricted day-of-week are OR-ed by
  croniter (``0 9 1 * 1`` = the 1st and every Monday).
* Rejected: a restricted day-of-month combined with a ``#``/``L<n>``
  day-of-week, and ``W`` combined with a restricted day-of-week: croniter
  7.0.0 gives neither AND nor OR results for those (``0 0 1 * 5#1`` yields
  every first Friday, ``0 0 15 * 5#2`` never fires, ``0 0 15W * 1`` ignores
  the Monday).  Also rejected: empty strings, 7+ fields (croniter's year form), ``@reboot`` and
  other unknown aliases, croniter's hashed/random ``H``/``R`` tokens (they are
  not deterministic across processes), expressions that can never fire
  (``0 0 30 2 *``), and anything croniter cannot parse.

Timezones: ``None`` or ``""`` means UTC; anything else must be a key that
``zoneinfo.ZoneInfo`` loads (``America/New_York``, ``UTC``, ``EST5EDT``...).

All public functions return aware UTC datetimes
(``tzinfo=datetime.timezone.utc``) with ``microsecond == 0``.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from itertools import islice
from typing import NamedTuple
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

__all__ = [
    "InvalidSchedule",
    "InvalidTimezone",
    "expand_alias",
    "fires_between",
    "min_period",
    "next_fire",
    "next_fires",
    "next_run",
    "validate",
]


# The one alias table (the admin's description and the django-celery-beat
# mirror read it through expand_alias).
_ALIASES: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

# Same field splitting as croniter (ASCII whitespace only).
_FIELD_RE = re.compile(r"\S+", re.ASCII)
# croniter's hashed ("H", needs a hash_id) and random ("R") field syntax.
_HASH_RE = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.ASCII | re.IGNORECASE)

# Each field's name and bounds, in croniter's order (the 6th field is seconds).
_FIELD_BOUNDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
    ("second", 0, 59),
)
_NAMES = {
    3: {
        m: i
        for i, m in enumerate(
            ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
        )
    },
    4: {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
}
_RANGE_RE = re.compile(r"^([0-9a-z]+)-([0-9a-z]+)$", re.ASCII | re.IGNORECASE)


def _field_number(index: int, token: str) -> int | None:
    if token.isdigit():
        return int(token)
    return _NAMES.get(index, {}).get(token.lower())


def _check_field(schedule: str, index: int, field: str) -> None:
    """Refuse what croniter would accept with a meaning nobody intends: a
    reversed range (``1-0``, which croniter wraps around), a step of zero or
    larger than the field's span (``*/99999999999999999999``). Values out of
    the field's bounds are croniter's to report."""
    name, low, high = _FIELD_BOUNDS[index]
    for part in field.split(","):
        body, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0 or int(step) > high - low + 1):
            raise InvalidSchedule(
                schedule,
                f"step {step!r} in the {name} field must be a whole number from 1 to "
                f"{high - low + 1}",
            )
        match = _RANGE_RE.match(body)
        if match is None:
            continue
        first, last = (_field_number(index, token) for token in match.groups())
        if first is not None and last is not None and first > last:
            raise InvalidSchedule(
                schedule,
                f"reversed range {body!r} in the {name} field: write the smaller bound first",
            )


# How far past ``after`` to look for a fall-back whose repeated wall times
# could still fire after ``after`` (longer than any real backwards jump).
_FOLD_PROBE = timedelta(hours=25)
_EPOCH = datetime(1970, 1, 1)
# Arbitrary fixed reference used to check that a schedule fires at all.
_REFERENCE_WALL = datetime(2000, 1, 1)


class InvalidSchedule(ValueError):
    """The cron expression is not acceptable.

    The message reads ``Invalid cron schedule '<schedule>': <reason>``.
    """

    def __init__(self, schedule: object, reason: str) -> None:
        self.schedule = schedule
        self.reason = reason
        super().__init__(f"Invalid cron schedule {schedule!r}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[object, str]]:  # picklable: two-argument constructor
        return (type(self), (self.schedule, self.reason))


class InvalidTimezone(ValueError):
    """The timezone is not an IANA key loadable by ``zoneinfo``.

    The message reads ``Unknown timezone '<timezone>'`` (plus a reason when the
    key is malformed rather than merely unknown).
    """

    def __init__(self, timezone: object, reason: str | None = None) -> None:
        self.timezone = timezone
        self.reason = reason
        message = f"Unknown timezone {timezone!r}"
        if reason:
            message += f": {reason}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[object, str | None]]:
        return (type(self), (self.timezone, self.reason))


class _Parsed(NamedTuple):
    expression: str  # normalized (alias expanded) expression
    template: croniter  # never iterated itself; copied per call
    wildcard: bool  # minute or hour field starts with '*' (cronie MIN_STAR/HR_STAR)
    has_seconds: bool  # 6-field form


# --------------------------------------------------------------------------
# Parsing / caches
# --------------------------------------------------------------------------


@lru_cache(maxsize=16384)
def _parse(schedule: str) -> _Parsed:
    if not isinstance(schedule, str):
        raise InvalidSchedule(schedule, f"expected a string, got {type(schedule).__name__}")
    text = schedule.strip()
    if not text:
        raise InvalidSchedule(schedule, "the schedule is empty")
    if text.startswith("@"):
        expression = _ALIASES.get(text.lower())
        if expression is None:
            raise InvalidSchedule(
                schedule,
                f"unknown alias {text!r}; supported: {', '.join(sorted(_ALIASES))}",
            )
    else:
        expression = text
    fields = _FIELD_RE.findall(expression)
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            schedule,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
            f"(the same plus a trailing seconds field), got {len(fields)}",
        )
    for index, field in enumerate(fields):
        if _HASH_RE.match(field):
            raise InvalidSchedule(
                schedule, f"hashed/random field {field!r} (H/R syntax) is not supported"
            )
        _check_field(schedule, index, field)
    try:
        template = croniter(expression, _REFERENCE_WALL, ret_type=datetime)
        if template.nth_weekday_of_month and template.expanded[2] != ["*"]:
            raise InvalidSchedule(
                schedule,
                "a day-of-month cannot be combined with a '#' or 'L<n>' day-of-week "
                "(croniter's result would be neither 'and' nor 'or')",
            )
        if template.nearest_weekday and template.expanded[4] != ["*"]:
            raise InvalidSchedule(
                schedule,
                "'W' cannot be combined with a day-of-week "
                "(croniter's result would be neither 'and' nor 'or')",
            )
        if template.expanded[4] == ["*"] and not template.nth_weekday_of_month:
            # Only the day-of-month decides the day: let croniter reject
            # impossible day/month combinations (Feb 30th).  Not done when the
            # day-of-week is restricted, because of the OR semantics.
            croniter.expand(expression, strict=True)
        # Make sure it fires at all (croniter searches 50 years ahead).
        probe = _copy_iter(template, _REFERENCE_WALL)
        probe.get_next()
    except InvalidSchedule:
        raise
    except CroniterBadDateError:
        raise InvalidSchedule(schedule, "the schedule never fires") from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # CroniterError is a ValueError subclass.
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InvalidSchedule(schedule, reason) from None
    wildcard = fields[0].startswith("*") or fields[1].startswith("*")
    return _Parsed(expression, template, wildcard, len(fields) == 6)


@lru_cache(maxsize=1024)
def _zone(timezone: str | None) -> tzinfo:
    if timezone is None or timezone == "":
        return UTC
    if not isinstance(timezone, str):
        raise InvalidTimezone(timezone, f"expected a string, got {type(timezone).__name__}")
    try:
        return ZoneInfo(timezone)
    except (KeyError, ValueError, OSError, TypeError) as exc:
        # KeyError: ZoneInfoNotFoundError (unknown key).  ValueError: path-like
        # or non-normalized keys, NUL bytes, files that are not TZif.
        # OSError: directories, over-long names.
        if isinstance(exc, KeyError):
            raise InvalidTimezone(timezone) from None
        raise InvalidTimezone(timezone, "not a valid IANA timezone key") from None


@lru_cache(maxsize=16384)
def _compiled_cached(schedule: str, timezone: str | None) -> tuple[_Parsed, tzinfo]:
    return _parse(schedule), _zone(timezone)


def _compiled(schedule: str, timezone: str | None) -> tuple[_Parsed, tzinfo]:
    """Parsed schedule and zone, cached on ``(schedule, timezone)``."""
    if not isinstance(schedule, str):
        raise InvalidSchedule(schedule, f"expected a string, got {type(schedule).__name__}")
    if timezone is not None and not isinstance(timezone, str):
        raise InvalidTimezone(timezone, f"expected a string, got {type(timezone).__name__}")
    return _compiled_cached(schedule, timezone)


def _copy_iter(template: croniter, start_wall: datetime) -> croniter:
    """A private croniter positioned at ``start_wall`` (thread-safe: the
    cached template is never mutated)."""
    it = croniter.__new__(croniter)
    it.__dict__.update(template.__dict__)
    if it.nth_weekday_of_month:  # croniter may update these sets in place
        it.nth_weekday_of_month = {k: set(v) for k, v in it.nth_weekday_of_month.items()}
    it.set_current(start_wall, force=True)
    return it


# --------------------------------------------------------------------------
# Wall time -> instants
# --------------------------------------------------------------------------


def _offset_at(instant: datetime, tz: tzinfo) -> timedelta:
    """UTC offset of ``tz`` at the naive-UTC ``instant``."""
    return instant.replace(tzinfo=UTC).astimezone(tz).utcoffset()  # type: ignore[return-value]


def _gap_end(lo: datetime, hi: datetime, tz: tzinfo, after_offset: timedelta) -> datetime:
    """First instant (naive UTC, whole second) in ``(lo, hi]`` whose offset is
    ``after_offset``: the transition at the end of a spring-forward gap."""
    lo_s = int((lo - _EPOCH).total_seconds())
    hi_s = int((hi - _EPOCH).total_seconds())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset_at(_EPOCH + timedelta(seconds=mid), tz) == after_offset:
            hi_s = mid
        else:
            lo_s = mid
    return _EPOCH + timedelta(seconds=hi_s)


def _require_aware(value: datetime) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {value!r}")


def _iter_fires(parsed: _Parsed, tz: tzinfo, after: datetime) -> Iterator[datetime]:
    """Yield fire instants (aware UTC) strictly after ``after``, ascending,
    without duplicates."""
    _require_aware(after)
    after_utc = after.astimezone(UTC).replace(tzinfo=None)  # naive UTC

    if tz is UTC:
        # No transitions: wall time == instant.
        it = _copy_iter(parsed.template, after_utc.replace(microsecond=0))
        get_next = it.get_next
        while True:
            try:
                wall: datetime = get_next()
            except (ValueError, OverflowError):  # incl. CroniterBadDateError
                return
            yield wall.replace(tzinfo=UTC)

    # Start the wall-clock iteration early enough that every wall time not
    # visited maps only to instants <= after.  Normally that is ``after``'s own
    # wall time; if the offset drops (fall-back) shortly after ``after``, wall
    # times up to the size of the drop earlier can still fire later.
    local = after_utc.replace(tzinfo=UTC).astimezone(tz)
    offset_after = local.utcoffset()
    start_wall = local.replace(tzinfo=None, fold=0, microsecond=0)
    probe_offset = _offset_at(after_utc + _FOLD_PROBE, tz)
    if probe_offset < offset_after:  # type: ignore[operator]
        drop = offset_after - probe_offset  # type: ignore[operator]
        if _offset_at(after_utc + drop, tz) != offset_after:
            start_wall -= drop

    it = _copy_iter(parsed.template, start_wall)
    get_next = it.get_next
    wildcard = parsed.wildcard
    pending: list[datetime] = []  # min-heap of instants not yet yielded
    last: datetime | None = None

    while True:
        try:
            wall = get_next()
        except (ValueError, OverflowError):  # incl. CroniterBadDateError
            break
        off0 = wall.replace(tzinfo=tz).utcoffset()
        off1 = wall.replace(tzinfo=tz, fold=1).utcoffset()
        if off0 == off1:  # ordinary wall time
            instant = wall - off0  # type: ignore[operator]
            if instant > after_utc:
                if not pending and (last is None or instant > last):
                    last = instant
                    yield instant.replace(tzinfo=UTC)
                    continue
                heapq.heappush(pending, instant)
            floor = instant
        elif off0 > off1:  # type: ignore[operator]
            # Ambiguous (fall-back): fold=0 is the first occurrence.
            first = wall - off0  # type: ignore[operator]
            if first > after_utc:
                heapq.heappush(pending, first)
            if wildcard:
                second = wall - off1  # type: ignore[operator]
                if second > after_utc:
                    heapq.heappush(pending, second)
            floor = first
        else:
            # Inside a spring-forward gap: off0 is the offset before the
            # transition, off1 the one after.  The transition lies in (lo, hi].
            lo = wall - off1  # type: ignore[operator]
            if wildcard:
                floor = lo  # does not fire; lo is a lower bound for later ones
            else:
                hi = wall - off0  # type: ignore[operator]
                floor = _gap_end(lo, hi, tz, off1)  # type: ignore[arg-type]
                if floor > after_utc:
                    heapq.heappush(pending, floor)
        # Every later wall time maps to instants >= floor, so whatever is
        # pending up to floor is final.
        while pending and pending[0] <= floor:
            instant = heapq.heappop(pending)
            if last is None or instant > last:
                last = instant
                yield instant.replace(tzinfo=UTC)

    while pending:
        instant = heapq.heappop(pending)
        if last is None or instant > last:
            last = instant
            yield instant.replace(tzinfo=UTC)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def validate(schedule: str, timezone: str | None) -> None:
    """Check a schedule and its timezone.

    Raises :class:`InvalidSchedule` (e.g. ``Invalid cron schedule '61 * * * *':
    ...``) for empty strings, wrong field counts (5 or 6 accepted; the 6th
    field is seconds), unknown aliases, H/R tokens, schedules that never fire
    and anything croniter rejects; then :class:`InvalidTimezone` (e.g.
    ``Unknown timezone 'Mars/Base'``) unless ``timezone`` is ``None``/``""``
    (UTC) or a key ``zoneinfo`` can load.  Returns ``None`` when both are fine.
    """
    _compiled(schedule, timezone)


def next_fire(schedule: str, timezone: str | None, after: datetime) -> datetime:
    """The first fire instant strictly after ``after``.

    ``after`` must be timezone-aware (any zone; naive raises ``ValueError``).
    Returns an aware UTC datetime with ``microsecond == 0``.  Fire times follow
    the module-level rule (croniter wall times in ``timezone``, cronie DST
    semantics).  Raises :class:`InvalidSchedule` / :class:`InvalidTimezone`
    for bad input, and :class:`InvalidSchedule` if no fire time can be found
    (only near ``datetime.max``).
    """
    parsed, tz = _compiled(schedule, timezone)
    for instant in _iter_fires(parsed, tz, after):
        return instant
    raise InvalidSchedule(schedule, f"no fire time after {after.isoformat()}")


def fires_between(
    schedule: str, timezone: str | None, start: datetime, end: datetime
) -> list[datetime]:
    """All fire instants ``t`` with ``start < t <= end``.

    ``start``/``end`` must be aware.  Returns aware UTC datetimes, ascending,
    without duplicates (a spring-forward collapse or a wildcard job's repeated
    fall-back hour are handled per the module rule).  Empty if ``end <= start``.
    The caller bounds the window: ``* * * * * *`` over a year is 31M items.
    """
    parsed, tz = _compiled(schedule, timezone)
    _require_aware(start)
    _require_aware(end)
    result: list[datetime] = []
    if end <= start:
        return result
    for instant in _iter_fires(parsed, tz, start):
        if instant > end:
            break
        result.append(instant)
    return result


def next_fires(schedule: str, timezone: str | None, after: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire instants strictly after ``after`` (aware UTC,
    ascending, no duplicates).  ``count`` must be >= 0."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    parsed, tz = _compiled(schedule, timezone)
    if count == 0:
        _require_aware(after)
        return []
    return list(islice(_iter_fires(parsed, tz, after), count))


def next_run(
    schedule: str, timezone: str | None, after: datetime, *, end_time: datetime | None = None
) -> datetime | None:
    """The first fire instant strictly after ``after``, or ``None`` when
    ``end_time`` comes first: a cron's ``next_run_date``."""
    nxt = next_fire(schedule, timezone, after)
    if end_time is not None and nxt > end_time:
        return None
    return nxt


def expand_alias(schedule: str) -> str:
    """The expression an alias stands for (``@daily`` -> ``0 0 * * *``,
    case-insensitive); any other schedule is returned unchanged."""
    return _ALIASES.get(schedule.strip().lower(), schedule)


def min_period(schedule: str) -> timedelta:
    """A lower bound of the time between two fires of a valid ``schedule``: a
    second with the seconds field (6 fields), a minute otherwise (5 fields and
    aliases)."""
    return timedelta(seconds=1) if _parse(schedule).has_seconds else timedelta(minutes=1)


def jitter_offset(
    key: str, instant: datetime, jitter: int | None, next_instant: datetime | None
) -> timedelta:
    """How late the instant `instant` of a cron with `jitter` seconds fires: a
    whole number of seconds in [0, jitter), and strictly before `next_instant`
    (the schedule's next instant; None: no bound), so a cron's fires never
    change order or overlap their next tick (the span is clamped to the gap).

    Derived from `key` (the cron's id) and the instant by a hash, not drawn:
    every process (a redelivery, a second beat, the API answering) computes the
    same offset. No jitter (None or 0): no offset."""
    if not jitter:
        return timedelta(0)
    span = jitter
    if next_instant is not None:
        span = min(span, math.ceil((next_instant - instant).total_seconds()))
    if span <= 1:
        return timedelta(0)
    digest = hashlib.sha256(f"{key}@{instant.astimezone(UTC).isoformat()}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % span)
