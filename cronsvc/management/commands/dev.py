"""`python manage.py dev`: API + Celery worker + beat in one process group.

Mirrors `langgraph dev`: migrates, creates the default assistants, starts a
worker, a webhook worker (deliveries on their own queue and slots) and
cronsvc's beat as child processes (never under an autoreloader,
so beat is not restarted behind its lease), and serves the API in this
process with uvicorn, on the same ASGI application production serves
(`cronsvc.topology.ASGI_APP`; static files for the admin and /docs included).
Ctrl-C stops all three.
"""

import signal
import subprocess
import sys
import threading
import time

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cronsvc import topology
from cronsvc.services import assistants_ensure_defaults

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class DevServer(uvicorn.Server):
    """uvicorn, saying where it serves once it listens."""

    def __init__(self, banner: str, out, config: uvicorn.Config):
        super().__init__(config)
        self.banner, self.out = banner, out

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self.out.write(self.banner)
            self.out.flush()


class Command(BaseCommand):
    help = "Run the API, a Celery worker and beat (development)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8123)
        parser.add_argument("--workers", type=int, default=1, help="worker processes")
        parser.add_argument("--concurrency", type=int, default=4, help="threads per worker")
        parser.add_argument("--no-beat", action="store_true", help="do not start beat")
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="do not start a worker (nor the webhook worker)",
        )

    def handle(self, *args, host, port, workers, concurrency, no_beat, no_worker, **options):
        if not settings.CRONSVC_API_KEYS:
            if host not in LOOPBACK:
                raise CommandError(
                    f"No API keys configured (CRONSVC_API_KEYS): the dev server only binds to "
                    f"loopback, not {host}."
                )
            self.stdout.write(
                "No API keys configured (CRONSVC_API_KEYS): serving without auth, on loopback only."
            )
        try:
            extra_hosts = topology.allowed_hosts_for(host, settings.OPERATOR_ALLOWED_HOSTS)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        settings.ALLOWED_HOSTS = [*extra_hosts, *settings.LOOPBACK_HOSTS]
        call_command("migrate", verbosity=0, interactive=False)
        assistants_ensure_defaults()

        children: list[subprocess.Popen] = []
        base = [sys.executable, "-m", "celery", "-A", "cronsvc"]
        if not no_worker:
            for i in range(workers):
                children.append(
                    subprocess.Popen(
                        [
                            *base,
                            "worker",
                            "--pool=threads",
                            f"--concurrency={concurrency}",
                            "-Q",
                            settings.CELERY_TASK_DEFAULT_QUEUE,
                            "--loglevel=INFO",
                            "-n",
                            f"dev{i}@%h",
                        ]
                    )
                )
            # Webhook deliveries: their own queue and slots (cronsvc.topology.WEBHOOKS).
            children.append(
                subprocess.Popen(
                    [
                        *base,
                        "worker",
                        "--pool=threads",
                        "--webhooks",
                        f"--concurrency={topology.WEBHOOK_CONCURRENCY}",
                        "--loglevel=INFO",
                        "-n",
                        "devhooks@%h",
                    ]
                )
            )
        if not no_beat:
            children.append(
                subprocess.Popen(
                    [
                        *base,
                        "beat",
                        "--loglevel=INFO",
                        "-S",
                        "crons.scheduler:CronScheduler",
                        "-s",
                        str(settings.DATA_DIR / "celerybeat-schedule"),
                    ]
                )
            )

        stopping = threading.Event()

        def stop(*_):
            if stopping.is_set():
                return
            stopping.set()
            for child in children:
                if child.poll() is None:
                    child.terminate()
            deadline = time.monotonic() + 20
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
            raise SystemExit(0)

        def watch():
            while not stopping.is_set():
                for child in children:
                    if child.poll() is not None and not stopping.is_set():
                        self.stderr.write(
                            f"child {child.args[4]} exited ({child.returncode}); stopping"
                        )
                        signal.raise_signal(signal.SIGTERM)
                        return
                time.sleep(1)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        threading.Thread(target=watch, daemon=True).start()
        server = DevServer(
            f"cronsvc API on http://{host}:{port} (docs at /docs, admin at /admin/)",
            self.stdout,
            uvicorn.Config(
                topology.ASGI_APP,
                host=host.strip("[]"),
                port=port,
                lifespan="on",
                access_log=False,
                log_level="warning",
                # Open waits and streams get this long to end on Ctrl-C.
                timeout_graceful_shutdown=5,
                timeout_keep_alive=topology.KEEP_ALIVE_SECONDS,
            ),
        )
        try:
            # uvicorn handles SIGINT/SIGTERM while it serves, then hands the
            # signal back to `stop`, which ends the children.
            server.run()
        finally:
            stop()
