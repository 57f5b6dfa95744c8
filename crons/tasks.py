"""Celery tasks of crons. They take ids and are safe to run twice."""

from celery import shared_task

from crons import dispatch
from crons.models import Cron


@shared_task(name="crons.fire_cron")
def fire_cron(cron_id: str) -> str | None:
    """Fire a cron now through the tick path, as a tick of this second (the
    mirrored PeriodicTask's task; the admin's trigger is a manual tick instead,
    crons.services.cron_trigger). A second call in the same second finds the
    tick recorded and does nothing."""
    cron = Cron.objects.filter(pk=cron_id).first()
    if cron is None:
        return None
    run = dispatch.cron_run_now(cron=cron)
    return str(run.run_id) if run else None
