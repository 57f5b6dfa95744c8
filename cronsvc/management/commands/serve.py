"""`python manage.py serve`: the production API server (gunicorn with uvicorn
workers on the ASGI application; the argv is `topology.api_server_argv`)."""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cronsvc import topology


class Command(BaseCommand):
    help = "Serve the API: gunicorn with uvicorn workers (production)."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("CRONSVC_BIND", "0.0.0.0:8123"))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 2))
        )

    def handle(self, *args, bind, workers, **options):
        if not settings.CRONSVC_API_KEYS and not settings.CRONSVC_ALLOW_ANONYMOUS:
            raise CommandError(
                "Refusing to serve without API keys: set CRONSVC_API_KEYS, or "
                "CRONSVC_ALLOW_ANONYMOUS=true to allow anonymous access explicitly."
            )
        try:
            hosts = topology.allowed_hosts_for(
                topology.bind_host(bind), settings.OPERATOR_ALLOWED_HOSTS
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # gunicorn's workers read the settings anew: they accept the bind address too.
        os.environ["DJANGO_ALLOWED_HOSTS"] = ",".join(hosts)
        argv = topology.api_server_argv(bind=bind, workers=workers, graceful_timeout=30)
        os.execv(sys.executable, argv)  # noqa: S606 - becomes gunicorn: no shell, argv as built
