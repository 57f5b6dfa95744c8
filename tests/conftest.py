"""Fixtures: a live API server on the test database (the ASGI application under
uvicorn, as every entry point serves it), a real Celery worker
(subprocess, Redis broker) and beat, and the official langgraph_sdk client.

Run through `scripts/test.sh`, which points DATABASE_URL at PostgreSQL and
CELERY_BROKER_URL at Redis.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
QUEUE = f"cronsvc-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session", autouse=True)
def _test_queue(django_db_setup, django_db_blocker):
    """Every test session publishes to and consumes from its own queue."""
    from cronsvc.celery import app

    app.conf.task_default_queue = QUEUE
    yield
    from cronsvc import checkpointer
    from store import backend as store_backend

    store_backend.reset()
    checkpointer.reset()
    # Whatever a child process or server thread left connected would keep the
    # test database from being dropped.
    if connection.settings_dict["NAME"].startswith("test_"):
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture(autouse=True)
def _default_assistants(request):
    """Every test with a database finds the default assistants, as a migrated
    database has them (cronsvc's post_migrate handler). Needed because a test
    flushing only some apps' tables (available_apps) skips post_migrate."""
    if request.node.get_closest_marker("django_db") is None:
        return
    from cronsvc.services import assistants_ensure_defaults

    with request.getfixturevalue("django_db_blocker").unblock():
        assistants_ensure_defaults()


def database_url() -> str:
    sd = connection.settings_dict
    assert connection.vendor == "postgresql", "tests run on PostgreSQL (see scripts/test.sh)"
    auth = sd["USER"] + (f":{sd['PASSWORD']}" if sd.get("PASSWORD") else "")
    return f"postgres://{auth}@{sd['HOST'] or '127.0.0.1'}:{sd['PORT'] or 5432}/{sd['NAME']}"


def subprocess_env(tmp_dir: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGGRAPH_API_KEY",))}
    env.update(
        {
            "DATABASE_URL": database_url(),
            "CELERY_QUEUE": QUEUE,
            "CRONSVC_DATA_DIR": str(tmp_dir),
            "PYTHONUNBUFFERED": "1",
            # The tests' workers keep the CPU share they always had (the
            # pytest process polls them); test_worker_nice checks the setting.
            "CRONSVC_WORKER_NICE": "0",
        }
    )
    env.update(extra)
    return env


class Proc:
    """A child process whose output is collected, waited on for a line."""

    def __init__(self, argv: list[str], env: dict, name: str, *, session: bool = False):
        self.name = name
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=session,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.name} did not say {text!r}:\n" + "".join(self.lines[-60:]))

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig=None, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            if sig is None:
                self.popen.terminate()
            else:
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_worker(
    tmp_dir: Path,
    name: str = "w1",
    concurrency: int = 4,
    *,
    webhooks: bool = False,
    session: bool = False,
    **env,
) -> Proc:
    """A run worker on the session's queue, or with `webhooks` a webhook worker
    on `<queue>-webhooks` (cronsvc.celery); with `session`, in a session of
    its own (as `manage.py runall` starts it)."""
    queues = ["--webhooks"] if webhooks else ["-Q", QUEUE]
    proc = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cronsvc",
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            *queues,
            "-n",
            f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        subprocess_env(tmp_dir, **env),
        f"worker {name}",
        session=session,
    )
    proc.wait_for("ready.", timeout=60)
    return proc


def start_beat(tmp_dir: Path, **env) -> Proc:
    proc = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cronsvc",
            "beat",
            "--loglevel=INFO",
            "-S",
            "crons.scheduler:CronScheduler",
            "-s",
            str(tmp_dir / "beat-schedule"),
        ],
        subprocess_env(tmp_dir, **env),
        "beat",
    )
    proc.wait_for("beat: Starting", timeout=60)
    return proc


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker on Redis, using the test database, and a webhook
    worker beside it (deliveries have their own queue)."""
    with django_db_blocker.unblock():
        proc = start_worker(tmp_path_factory.mktemp("worker"))
        hooks = start_worker(tmp_path_factory.mktemp("webhooks"), "hooks", 2, webhooks=True)
    yield proc
    hooks.stop()
    proc.stop()


class UvicornLiveServer:
    """pytest-django's `live_server` contract (`.url`, and the ALLOWED_HOSTS change
    its `_live_server_helper` enables for each test, with transactional_db) served
    by uvicorn in a thread on cronsvc's ASGI application: the tests hit the server
    production runs, async views, streaming and static files included. The
    server's ORM calls open their own connections to the test database, so tests
    see its writes and it sees theirs (transactional_db, as with Django's
    LiveServerThread)."""

    def __init__(self, host: str = "127.0.0.1"):
        import uvicorn
        from django.test.utils import modify_settings

        from cronsvc import topology
        from cronsvc.asgi import application

        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port = self._socket.getsockname()[1]
        self._live_server_modified_settings = modify_settings(ALLOWED_HOSTS={"append": host})
        self.server = uvicorn.Server(
            uvicorn.Config(
                application,
                lifespan="on",
                access_log=False,
                log_level="warning",
                backlog=2048,
                timeout_graceful_shutdown=2,
                timeout_keep_alive=topology.KEEP_ALIVE_SECONDS,
            )
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the uvicorn live server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self._socket.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.url

    def __add__(self, other: str) -> str:
        return f"{self}{other}"


@pytest.fixture(scope="session")
def live_server(django_db_setup):
    """Overrides pytest-django's (a WSGI server): the ASGI application under uvicorn."""
    server = UvicornLiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sdk(live_server):
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=live_server.url, api_key=None)


@pytest.fixture
def asdk_url(live_server):
    return live_server.url


def wait_until(predicate, timeout: float = 30, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture
def parked_runs(monkeypatch):
    """Runs created in the test are never executed, whether or not the
    session's worker is up: their wake-ups go to a queue no worker reads
    (purged afterwards)."""
    from cronsvc.celery import app

    parked_queue = f"{QUEUE}-parked-runs"
    monkeypatch.setattr(app.conf, "task_default_queue", parked_queue)
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(parked_queue)
