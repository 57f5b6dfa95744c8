"""The django-celery-beat mirror of a cron: a PeriodicTask for display.

cronsvc's scheduler reads the cron table, not these rows, so they are saved
with `no_changes = True` (no bump of the single PeriodicTasks row, which would
serialise every cron write) and schedule rows are inserted with bulk_create
(which sends no post_save signal, for the same reason). Expressions Celery's
crontab cannot express (`L`, `#`, seconds) are never handed to it: their
mirror is a one-off clocked schedule at the cron's next fire time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from celery.schedules import crontab as celery_crontab
from django.db import IntegrityError, connection
from django.utils import timezone as djtz
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from crons import firetime
from crons.models import Cron
from cronsvc.pg_copy import NULL, copy_field, copy_lines, copy_text, lock_keys, reserve_ids

MIRROR_TASK = "crons.fire_cron"


def celery_fields(schedule: str) -> dict | None:
    """Crontab fields for Celery, or None when Celery's crontab cannot express it."""
    expr = firetime.expand_alias(schedule)
    parts = expr.split()
    if len(parts) != 5 or any(c in expr for c in "L#W?"):
        return None
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    try:
        celery_crontab(minute, hour, day_of_week, day_of_month, month_of_year)
    except Exception:  # noqa: BLE001 - Celery's parser raises several types
        return None
    return {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }


def _crontab_row(fields: dict, timezone: str) -> CrontabSchedule:
    row = CrontabSchedule.objects.filter(**fields, timezone=timezone).order_by("id").first()
    if row is None:
        (row,) = CrontabSchedule.objects.bulk_create([CrontabSchedule(**fields, timezone=timezone)])
        if row.pk is None:  # backends that do not return ids from bulk_create
            row = (
                CrontabSchedule.objects.filter(**fields, timezone=timezone).order_by("-id").first()
            )
    return row


def _clocked_row(cron: Cron, reuse: int | None = None) -> ClockedSchedule | None:
    """The cron's one clocked row at its next fire time: the row `reuse` (the
    mirror's current one) moved in place, or a new row. None when it has no
    next fire time. Queryset writes, so no signal bumps PeriodicTasks."""
    if cron.next_run_date is None:
        return None
    return _clocked_row_at(cron.next_run_date, reuse)


def _kwargs(cron_id) -> str:
    return f'{{"cron_id": "{cron_id}"}}'


_DESCRIPTION_HEAD = "Mirror of cronsvc cron "


def _description(cron_id, schedule: str, timezone: str | None) -> str:
    return (
        f"{_DESCRIPTION_HEAD}{cron_id}: '{schedule}' in "
        f"{timezone or 'UTC'}. cronsvc's scheduler fires it; edit it on the cron's page."
    )


def _describe(task: PeriodicTask, cron: Cron) -> PeriodicTask:
    task.no_changes = True
    task.kwargs = _kwargs(cron.cron_id)
    task.enabled = cron.enabled and cron.next_run_date is not None
    task.expires = cron.end_time
    task.description = _description(cron.cron_id, cron.schedule, cron.timezone)
    return task


def mirrors_bulk_create(crons: list[Cron]) -> list[PeriodicTask]:
    """Unsaved crons get new PeriodicTask mirrors, inserted in bulk (no signals).

    Sets each cron's periodic_task; the caller then inserts the crons."""
    crontabs: dict = {}
    tasks = []
    for cron in crons:
        task = _describe(PeriodicTask(name=f"cron {cron.cron_id}", task=MIRROR_TASK), cron)
        fields = celery_fields(cron.schedule)
        if fields is not None:
            key = (tuple(sorted(fields.items())), cron.timezone or "UTC")
            if key not in crontabs:
                crontabs[key] = _crontab_row(fields, cron.timezone or "UTC")
            task.crontab = crontabs[key]
        else:
            task.clocked = _clocked_row(cron) or _clocked_row_at(cron.created_at)
            task.one_off = True
        tasks.append(task)
    PeriodicTask.objects.bulk_create(tasks, batch_size=2000)
    for cron, task in zip(crons, tasks, strict=True):
        cron.periodic_task = task
    return tasks


class MirrorOf(Protocol):
    """What a cron's mirror is made of, for an import that writes no model
    instances (mirrors_copy)."""

    @property
    def cron_id(self) -> uuid.UUID | str: ...
    @property
    def schedule(self) -> str: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def end_time(self) -> datetime | None: ...
    @property
    def next_run_date(self) -> datetime | None: ...


def crontab_ids(keys: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str | None], int | None]:
    """The CrontabSchedule id of each (schedule, timezone), created when missing;
    None for schedules Celery's crontab cannot express. One query per timezone
    and one insert for all the missing rows, however many keys."""
    fields_of = {key: celery_fields(key[0]) for key in set(keys)}
    columns = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    existing: dict = {}
    for tz in {key[1] or "UTC" for key, fields in fields_of.items() if fields is not None}:
        for row in (
            CrontabSchedule.objects.filter(timezone=tz).order_by("-id").values("id", *columns)
        ):
            existing[(*(row[c] for c in columns), tz)] = row["id"]  # the lowest id wins
    ids: dict[tuple[str, str | None], int | None] = {}
    missing: dict[tuple, list] = {}
    for key, fields in fields_of.items():
        if fields is None:
            ids[key] = None
            continue
        tz = key[1] or "UTC"
        found = existing.get((*(fields[c] for c in columns), tz))
        if found is not None:
            ids[key] = found
        else:
            missing.setdefault((*(fields[c] for c in columns), tz), []).append(key)
    if missing:
        rows = CrontabSchedule.objects.bulk_create(
            [
                CrontabSchedule(**dict(zip(columns, k[:5], strict=True)), timezone=k[5])
                for k in missing
            ]
        )
        for row, keys_of_row in zip(rows, missing.values(), strict=True):
            for key in keys_of_row:
                ids[key] = row.pk
    return ids


def mirrors_copy(
    cursor, crons: Sequence[MirrorOf], *, now: datetime, lock_crontabs: bool = False
) -> list[int]:
    """Insert the mirrors of crons about to be imported with PostgreSQL COPY
    (`cursor`: a psycopg 3 cursor in the caller's transaction); the
    PeriodicTask id of each, in order. The same rows mirrors_bulk_create
    writes, without a model instance per row.

    `lock_crontabs`: for a COPY without foreign-key triggers (the caller's
    session_replication_role = replica), lock the crontab rows the mirrors
    use as the foreign key's check would (FOR KEY SHARE, so none is deleted
    before commit), in one statement; IntegrityError if one is gone. The
    clocked rows are the COPY's own."""
    crontab_of = crontab_ids((c.schedule, c.timezone) for c in crons)
    if lock_crontabs and not lock_keys(
        cursor,
        CrontabSchedule._meta.db_table,
        "id",
        [pk for pk in crontab_of.values() if pk is not None],
    ):
        raise IntegrityError("a crontab schedule of the imported mirrors was deleted")
    clocked = [c for c in crons if crontab_of[(c.schedule, c.timezone)] is None]
    clocked_ids = reserve_ids(cursor, ClockedSchedule._meta.db_table, len(clocked))
    clocked_of = {c.cron_id: pk for c, pk in zip(clocked, clocked_ids, strict=True)}
    if clocked:
        copy_lines(
            cursor,
            f"COPY {ClockedSchedule._meta.db_table} (id, clocked_time) FROM STDIN",
            (
                f"{pk}\t{copy_field(c.next_run_date or now)}\n"
                for c, pk in zip(clocked, clocked_ids, strict=True)
            ),
        )
    task_ids = reserve_ids(cursor, PeriodicTask._meta.db_table, len(crons))
    changed = copy_field(now)
    # What a mirror's line holds besides its ids, formatted once per
    # (schedule, timezone) and per (schedule, timezone, end_time, enabled):
    # the mix of an import repeats them, a line costs one lookup of each.
    described: dict = {}
    rest_of: dict = {}

    def lines():
        for c, pk in zip(crons, task_ids, strict=True):
            key = (c.schedule, c.timezone)
            described_as = described.get(key)
            if described_as is None:
                # The description after the id (which needs no escape).
                text = _description("", c.schedule, c.timezone).removeprefix(_DESCRIPTION_HEAD)
                described_as = described[key] = copy_text(text)
            enabled = bool(c.enabled) and c.next_run_date is not None
            rest_key = (key, c.end_time, enabled)
            rest = rest_of.get(rest_key)
            if rest is None:
                crontab = crontab_of[key]
                rest = rest_of[rest_key] = (
                    f"{MIRROR_TASK}\t[]\t{copy_field(c.end_time)}\t{copy_field(enabled)}\t0\t"
                    f"{changed}\t{copy_field(crontab)}\t{copy_field(crontab is None)}\t{{}}\n"
                )
            cron_id = str(c.cron_id)
            clocked_field = clocked_of.get(c.cron_id, NULL) if clocked_of else NULL
            yield (
                f"{pk}\tcron {cron_id}\t{_kwargs(cron_id)}\t{_DESCRIPTION_HEAD}{cron_id}"
                f"{described_as}\t{clocked_field}\t{rest}"
            )

    copy_lines(
        cursor,
        f"COPY {PeriodicTask._meta.db_table} (id, name, kwargs, description, clocked_id, task, "
        "args, expires, enabled, total_run_count, date_changed, crontab_id, one_off, headers) "
        "FROM STDIN",
        lines(),
    )
    return task_ids


def _clocked_row_at(when, reuse: int | None = None) -> ClockedSchedule:
    if reuse is not None and ClockedSchedule.objects.filter(pk=reuse).update(clocked_time=when):
        return ClockedSchedule(pk=reuse, clocked_time=when)
    (row,) = ClockedSchedule.objects.bulk_create([ClockedSchedule(clocked_time=when)])
    return row


# The PeriodicTask fields mirror_sync writes.
_SYNCED = [
    "kwargs",
    "enabled",
    "expires",
    "description",
    "crontab_id",
    "clocked_id",
    "interval_id",
    "solar_id",
    "one_off",
    "date_changed",
    "last_run_at",
]


def mirror_sync(cron: Cron) -> PeriodicTask | None:
    """Create or update the cron's PeriodicTask in the caller's transaction. A
    cron not inserted yet gets its mirror first (and inserts it with its row)."""
    task = _describe(
        cron.periodic_task or PeriodicTask(name=f"cron {cron.cron_id}", task=MIRROR_TASK), cron
    )
    fields = celery_fields(cron.schedule)
    old_clocked = task.clocked_id
    task.crontab = task.clocked = task.interval = task.solar = None
    task.one_off = False
    if fields is not None:
        task.crontab = _crontab_row(fields, cron.timezone or "UTC")
    else:
        task.clocked = _clocked_row(cron, reuse=old_clocked)
        task.one_off = True
        if task.clocked is None:
            # Nothing left to fire: a disabled row at the cron's creation time.
            created = cron.created_at or djtz.now()  # a cron not inserted yet: now
            task.clocked = _clocked_row_at(created, reuse=old_clocked)
            task.enabled = False
    # Queryset writes, not save(): its uniqueness query is not needed (one name
    # per cron) and its change bump must not happen.
    task.date_changed = djtz.now()
    if not task.enabled:
        task.last_run_at = None
    if task.pk is None:
        PeriodicTask.objects.bulk_create([task])
    else:
        PeriodicTask.objects.filter(pk=task.pk).update(
            **{field: getattr(task, field) for field in _SYNCED}
        )
    if old_clocked is not None and task.clocked_id != old_clocked:
        ClockedSchedule.objects.filter(pk=old_clocked).delete()  # now a crontab: one row less
    if cron.periodic_task_id != task.pk:
        cron.periodic_task = task
        if not cron._state.adding:  # a cron inserted after its mirror carries it already
            Cron.objects.filter(pk=cron.pk).update(periodic_task=task)
    return task


def mirror_delete(cron: Cron) -> None:
    """Delete a removed cron's mirror (its row is gone: nothing to unlink), in
    one statement that also tells which clocked row it used (SQLite and
    PostgreSQL both have DELETE ... RETURNING)."""
    if cron.periodic_task_id is None:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {PeriodicTask._meta.db_table} WHERE id = %s RETURNING clocked_id",  # noqa: S608 - a model table
            [cron.periodic_task_id],
        )
        row = cursor.fetchone()
    clocked = row[0] if row else None
    if clocked is not None:
        ClockedSchedule.objects.filter(pk=clocked).delete()


def _delete_task(task: PeriodicTask) -> None:
    """Delete a mirror and the clocked row that only it uses."""
    task.no_changes = True
    clocked = task.clocked_id
    task.delete()
    if clocked is not None:
        ClockedSchedule.objects.filter(pk=clocked).delete()


def mirrors_delete_for(crons) -> None:
    """Delete the mirrors of crons about to be removed by a cascade (thread or
    assistant deletion), without bumping PeriodicTasks."""
    for task in PeriodicTask.objects.filter(cron__in=crons):
        _delete_task(task)
