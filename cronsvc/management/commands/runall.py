"""`python manage.py runall --workers N [--concurrency C] [--bind HOST:PORT]`.

The docker-compose topology without containers: migrates, then starts the API
(gunicorn), one beat, N worker processes and one webhook worker (its own
queue and slots) with the same command lines as the
compose services (cronsvc/topology.py), against DATABASE_URL and
CELERY_BROKER_URL. SIGTERM or SIGINT (Ctrl-C) is forwarded to every child as
SIGTERM — a warm shutdown: workers finish their in-flight runs, gunicorn its
requests, beat releases its lease — and runall waits for them; a second signal
kills them. If a child exits on its own, the others are stopped and runall
exits with status 1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cronsvc import topology


class Command(BaseCommand):
    help = (
        "Run migrate, then the API, one beat, N Celery workers and a webhook worker "
        "as processes (production)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workers", type=int, default=1, help="worker processes")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="threads per worker (default CELERY_WORKER_CONCURRENCY)",
        )
        parser.add_argument("--bind", default="127.0.0.1:8123", help="the API's address")

    def handle(self, *args, workers, concurrency, bind, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        # Checked here too, before anything starts (serve refuses the same way).
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
        if subprocess.run(topology.local_argv(topology.MIGRATE)).returncode != 0:
            raise CommandError("migrate failed; nothing started")

        api_env = {"CRONSVC_BIND": bind, "DJANGO_ALLOWED_HOSTS": ",".join(hosts)}
        specs = [("api", topology.API, api_env), ("beat", topology.BEAT, {})]
        for i in range(workers):
            # Celery reads CELERY_WORKER_<OPTION> as its --<option>: a node name
            # of its own per worker, on the same command line.
            env = {"CELERY_WORKER_HOSTNAME": f"worker{i + 1}@%h"}
            if concurrency is not None:
                env["CELERY_WORKER_CONCURRENCY"] = str(concurrency)
            specs.append((f"worker{i + 1}", topology.WORKER, env))
        specs.append(("webhooks", topology.WEBHOOKS, {"CELERY_WORKER_HOSTNAME": "webhooks@%h"}))

        received: list[int] = []
        previous = {
            sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        children: dict[str, subprocess.Popen] = {}
        try:
            for name, command, extra in specs:
                # A session of its own: a terminal's Ctrl-C reaches the children
                # only as the one SIGTERM forwarded below, never twice.
                children[name] = subprocess.Popen(
                    topology.local_argv(command),
                    env={**os.environ, **extra},
                    start_new_session=True,
                )
                self.stdout.write(f"runall: started {name} (pid {children[name].pid})")
            self.stdout.write(
                f"runall: API on http://{bind}, beat, {workers} worker(s), a webhook worker; "
                "SIGTERM or Ctrl-C stops all"
            )
            self.stdout.flush()
            failed = self._supervise(children, received)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.kill()
                    child.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:
            raise CommandError(f"{failed} exited on its own; stopped the others")
        codes = {name: child.returncode for name, child in children.items()}
        self.stdout.write(
            "runall: stopped (" + ", ".join(f"{n} {c}" for n, c in codes.items()) + ")"
        )
        if any(codes.values()):
            raise CommandError("a child did not exit cleanly")

    def _supervise(self, children: dict[str, subprocess.Popen], received: list[int]) -> str | None:
        """Wait for a signal or a child's exit; stop all, wait for them. Returns
        the name of a child that exited on its own, if one did."""
        failed = None
        while not received:
            failed = next((n for n, c in children.items() if c.poll() is not None), None)
            if failed:
                self.stderr.write(f"runall: {failed} exited ({children[failed].returncode})")
                break
            time.sleep(0.2)
        handled = len(received)
        self.stdout.write("runall: stopping (SIGTERM to every child; a second signal kills them)")
        self.stdout.flush()
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        while any(child.poll() is None for child in children.values()):
            if len(received) > handled:
                self.stderr.write("runall: second signal; killing the children")
                for child in children.values():
                    if child.poll() is None:
                        child.kill()
            time.sleep(0.2)
        return failed
