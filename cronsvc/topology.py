"""The processes of a cronsvc deployment and their command lines.

docker-compose.yml runs each in a container and `manage.py runall` runs them as
local processes; tests/test_deploy.py asserts that the compose file's commands
are exactly these. Everything else reaches them through the environment
(DATABASE_URL, CELERY_BROKER_URL, CELERY_WORKER_CONCURRENCY, CRONSVC_BIND…), so
one command line serves both.

- migrate: one-shot; applies migrations (including the checkpointer's tables)
  before anything else starts.
- api: the HTTP API, the ASGI application (cronsvc.asgi) under gunicorn with
  uvicorn workers via `manage.py serve` (`api_server_argv`; refuses to start
  without API keys unless CRONSVC_ALLOW_ANONYMOUS=true). `manage.py dev` and
  the tests' live server run the same application under uvicorn in-process.
- beat: cronsvc's scheduler; fires due crons. Exactly one is active (the
  scheduler lease); a second one would wait as a standby.
- worker: executes runs. Threads pool, because a run mostly waits on LLM calls;
  scale by adding processes (`--scale worker=N`, `runall --workers N`).
  Gossip and mingle are off: cronsvc uses neither, and with many workers they
  add broker traffic that grows with the square of their number.
- webhooks: delivers webhooks, from their own queue (`--webhooks`:
  `<queue>-webhooks`), with WEBHOOK_CONCURRENCY slots of its own, so a slow
  or huge receiver never takes a run's slot. Without it deliveries wait on
  their queue.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

MIGRATE = ("python", "manage.py", "migrate", "--noinput")
API = ("python", "manage.py", "serve")
BEAT = ("celery", "-A", "cronsvc", "beat", "--loglevel=INFO", "-S", "crons.scheduler:CronScheduler")
WORKER = (
    "celery",
    "-A",
    "cronsvc",
    "worker",
    "--pool=threads",
    "--loglevel=INFO",
    "--without-gossip",
    "--without-mingle",
)

# Deliveries a webhook worker makes at once: each waits on the network for
# at most CRONSVC_WEBHOOK_TIMEOUT per attempt, holding no run.
WEBHOOK_CONCURRENCY = 4
WEBHOOKS = (*WORKER, "--webhooks", f"--concurrency={WEBHOOK_CONCURRENCY}")

# Compose service name -> command line.
COMMANDS: dict[str, tuple[str, ...]] = {
    "migrate": MIGRATE,
    "api": API,
    "beat": BEAT,
    "worker": WORKER,
    "webhooks": WEBHOOKS,
}


# The one application every server runs (gunicorn's uvicorn workers, `manage.py
# dev`'s in-process uvicorn, the tests' live server).
ASGI_APP = "cronsvc.asgi:application"

# How long every server keeps an idle keep-alive connection open. It must
# outlast the clients' own idle expiry (httpx, under the Python SDK: 5 s;
# Node's fetch: 4 s; load balancers: often 60 s), or a client sends its next
# request on a connection the server is closing and gets a reset (gunicorn's
# default was 2 s, uvicorn's 5 s: both raced the SDK).
KEEP_ALIVE_SECONDS = 75


def api_server_argv(*, bind: str, workers: int, graceful_timeout: float) -> list[str]:
    """`manage.py serve`'s server: gunicorn managing `workers` uvicorn worker
    processes (restarted when they die), each serving ASGI_APP on an event loop.
    `graceful_timeout`: how long a stopping worker lets open requests (waits,
    streams) finish."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        ASGI_APP,
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--bind",
        bind,
        "--workers",
        str(workers),
        # A uvicorn worker answers gunicorn's heartbeat from its loop, whatever
        # its requests wait on: the timeout only catches a stuck loop.
        "--timeout",
        "60",
        "--graceful-timeout",
        str(int(graceful_timeout)),
        "--keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--access-logfile",
        "-",
    ]


def local_argv(command: Sequence[str]) -> list[str]:
    """The command line for this interpreter: `python` and `celery` resolved to
    sys.executable, so a virtualenv works without being activated."""
    program, *args = command
    if program == "python":
        return [sys.executable, *args]
    if program == "celery":
        return [sys.executable, "-m", "celery", *args]
    raise ValueError(f"unknown program {program!r}")


def connection_budget(
    *,
    workers: int,
    concurrency: int,
    web_workers: int,
    web_threads: int,
    pool_size: int,
    webhook_workers: int = 0,
    webhook_concurrency: int = WEBHOOK_CONCURRENCY,
    offloop_threads: int = 0,
) -> int:
    """The most PostgreSQL connections the topology holds open at once.

    Django keeps one connection per thread that uses it (CONN_MAX_AGE), and
    each process that runs or reads graphs has one checkpointer pool of up to
    `pool_size` (CRONSVC_CHECKPOINTER_POOL_SIZE) connections:
    - a worker process: one per pool thread (`concurrency`), its main thread,
      its heartbeat thread and its lease renewer (runs.leases.LeaseRenewer,
      while it has runs), plus its checkpointer pool;
    - an API process (a uvicorn worker, `web_workers` of them): its offloop
      executor's threads (`offloop_threads`, CRONSVC_OFFLOOP_THREADS: one kept
      connection each, whatever number of waits and streams are open), the
      sync views in flight (`web_threads`, CRONSVC_WEB_THREADS: each holds a
      connection for its request only, CONN_MAX_AGE 0 under ASGI; the server
      does not cap them, this is what the budget allows for), its run
      listener (one, `LISTEN cronsvc_runs`, runs.waiters) plus its
      checkpointer pool;
    - beat: its scheduler thread and the thread that advances next fire
      times, plus a checkpointer pool at most;
    - a webhook worker process: one per pool thread, its main thread and its
      heartbeat thread (it opens no checkpointer pool).
    Health checks, migrate and pg_dump each add one while they run.
    """
    worker = concurrency + 3 + pool_size
    api = web_workers * (offloop_threads + web_threads + 1 + pool_size)
    beat = 2 + pool_size
    webhooks = webhook_workers * (webhook_concurrency + 2)
    return workers * worker + api + beat + webhooks


# The addresses that mean "every interface" (checked, not bound, here).
WILDCARD_BINDS = {"0.0.0.0", "::", "[::]", ""}  # noqa: S104


def bind_host(bind: str) -> str:
    """The host part of a bind address: `127.0.0.1:8123` → `127.0.0.1`, `[::1]:8123` → `[::1]`."""
    host, _, port = bind.rpartition(":")
    return host if port.isdigit() and host else bind


def allowed_hosts_for(host: str, operator_hosts: Sequence[str]) -> list[str]:
    """The Host names a server bound to `host` accepts beyond the loopback names:
    the operator's list (DJANGO_ALLOWED_HOSTS), plus the bind address itself when
    it is one address. Bound to every interface, the names clients use are the
    operator's to say: ValueError when they did not."""
    if host in WILDCARD_BINDS:
        if not operator_hosts:
            raise ValueError(
                f"Bound to every interface ({host or '*'}): set DJANGO_ALLOWED_HOSTS to the "
                "host names clients use (loopback names are always allowed)."
            )
        return list(operator_hosts)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return [*operator_hosts, host]
