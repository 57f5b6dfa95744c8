"""`python manage.py healthcheck [beat|worker|webhooks]`: exit 0 when healthy, 1 when not.

Without an argument it checks what `GET /health` checks (database, beat,
workers). With `beat` or `worker` it checks that component on this host, as the
compose health check of that container does: a worker container is healthy
while one of its workers writes heartbeats, the beat container while its beat
renews the scheduler lease, a webhook worker container (`webhooks`) while
its webhook worker writes heartbeats.
"""

import socket

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from cronsvc import health
from cronsvc.dbclock import db_now


class Command(BaseCommand):
    help = "Exit 0 when cronsvc (or this host's beat or worker) is healthy, 1 otherwise."

    def add_arguments(self, parser):
        parser.add_argument("component", nargs="?", choices=["beat", "worker", "webhooks"])

    def handle(self, *args, component, **options):
        if component is None:
            result = health.health_get()
            if not result.ok:
                raise CommandError(result.as_dict()["detail"])
            self.stdout.write("ok")
            return
        try:
            now = db_now()
            here = socket.gethostname()
            if component == "beat":
                result = health.beat_health(now, hostname=here)
            else:
                role = "webhooks" if component == "webhooks" else "runs"
                result = health.workers_health(now, hostname=here, role=role)
        except DatabaseError as exc:
            raise CommandError(f"database unavailable: {exc}")
        if result.status != "ok":
            raise CommandError(f"{component}: {result.detail}")
        self.stdout.write(f"{component}: ok")
