"""The django-celery-beat mirror of a cron: a PeriodicTask for display.

cronsvc's scheduler reads the cron table, not these rows, so they are saved
with `no_changes = True` (no bump of the single PeriodicTasks row, which would
serialise every cron write) and schedule rows are inserted with bulk_create
(which sends no post_save signal, for the same reason). Expressions Celery's
crontab cannot express (`L`, `#`, seconds) are never handed to it: their
mirror is a one-off clocked schedule at the cron's next fire time.
"""

from __future__ import annotations

from celery.schedules import crontab as celery_crontab
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from crons import firetime
from crons.models import Cron

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


def _describe(task: PeriodicTask, cron: Cron) -> PeriodicTask:
    task.no_changes = True
    task.kwargs = f'{{"cron_id": "{cron.cron_id}"}}'
    task.enabled = cron.enabled and cron.next_run_date is not None
    task.expires = cron.end_time
    task.description = (
        f"Mirror of cronsvc cron {cron.cron_id}: '{cron.schedule}' in "
        f"{cron.timezone or 'UTC'}. cronsvc's scheduler fires it; edit it on the cron's page."
    )
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


def _clocked_row_at(when, reuse: int | None = None) -> ClockedSchedule:
    if reuse is not None and ClockedSchedule.objects.filter(pk=reuse).update(clocked_time=when):
        return ClockedSchedule(pk=reuse, clocked_time=when)
    (row,) = ClockedSchedule.objects.bulk_create([ClockedSchedule(clocked_time=when)])
    return row


def mirror_sync(cron: Cron) -> PeriodicTask | None:
    """Create or update the cron's PeriodicTask in the caller's transaction."""
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
            task.clocked = _clocked_row_at(cron.created_at, reuse=old_clocked)
            task.enabled = False
    task.save()
    if old_clocked is not None and task.clocked_id != old_clocked:
        ClockedSchedule.objects.filter(pk=old_clocked).delete()  # now a crontab: one row less
    if cron.periodic_task_id != task.pk:
        cron.periodic_task = task
        Cron.objects.filter(pk=cron.pk).update(periodic_task=task)
    return task


def mirror_delete(cron: Cron) -> None:
    task = PeriodicTask.objects.filter(pk=cron.periodic_task_id).first()
    if task is not None:
        _delete_task(task)


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
