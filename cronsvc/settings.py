"""cronsvc settings, driven by environment variables (see .env.example).

Embedded default: SQLite in CRONSVC_DATA_DIR and kombu's filesystem broker, so
nothing needs a server. Set DATABASE_URL and CELERY_BROKER_URL for PostgreSQL
and Redis.
"""

import json
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("CRONSVC_DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or a random key kept in the data folder (never in code)."""
    key = env("DJANGO_SECRET_KEY", default="")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The host names clients use (DJANGO_ALLOWED_HOSTS, comma-separated; `manage.py serve`
# refuses to start without them). Loopback names are always allowed: only a local
# client (a health check, a developer) sends them, never a web page by DNS rebinding,
# whose Host is the attacker's name. `dev` and `runall` add the address they bind.
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
OPERATOR_ALLOWED_HOSTS = [h for h in env.list("DJANGO_ALLOWED_HOSTS", default=[]) if h]
ALLOWED_HOSTS = [*OPERATOR_ALLOWED_HOSTS, *LOOPBACK_HOSTS]
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: cronsvc's `runserver` (which points to `manage.py dev`)
    # takes the place of Django's development server.
    "cronsvc",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "threads",
    "runs",
    "crons",
    "store",
]

MIDDLEWARE = [
    "cronsvc.http.middleware.BodySizeLimitMiddleware",
    "cronsvc.http.middleware.AuthUserMiddleware",
    # Django's own, cheap under ASGI (see cronsvc.http.middleware): session,
    # login, messages and CSRF only where the admin session is read.
    "cronsvc.http.middleware.SecurityMiddleware",
    "cronsvc.http.middleware.StaticFilesMiddleware",
    "cronsvc.http.middleware.SessionMiddleware",
    "cronsvc.http.middleware.CommonMiddleware",
    "cronsvc.http.middleware.CsrfViewMiddleware",
    "cronsvc.http.middleware.AuthenticationMiddleware",
    "cronsvc.http.middleware.MessageMiddleware",
    "cronsvc.http.middleware.XFrameOptionsMiddleware",
    # Last, as django-axes requires: locks out admin logins after repeated failures.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Admin login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for
# one username from one address, that pair is locked out for AXES_COOLOFF_HOURS,
# even with the right password.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# HTTPS (production behind a TLS-terminating proxy): secure cookies and HSTS.
# Off by default, so the loopback dev server works over plain http.
CRONSVC_HTTPS = env.bool("CRONSVC_HTTPS", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=CRONSVC_HTTPS)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=CRONSVC_HTTPS)
SECURE_HSTS_SECONDS = env.int(
    "DJANGO_SECURE_HSTS_SECONDS", default=31_536_000 if CRONSVC_HTTPS else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# The redirect to https is the proxy's job; if cronsvc does it, the health paths stay
# reachable over plain http for the compose health checks.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^ok$", r"^health$"]
if env.bool("DJANGO_TRUST_X_FORWARDED_PROTO", default=CRONSVC_HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SILENCED_SYSTEM_CHECKS = [
    # W008 (no SECURE_SSL_REDIRECT): the TLS proxy in front redirects http to https;
    # DJANGO_SECURE_SSL_REDIRECT=true makes cronsvc do it (health paths exempt).
    *([] if SECURE_SSL_REDIRECT else ["security.W008"]),
    # W005/W021 (HSTS without includeSubDomains/preload): both bind other hosts of the
    # operator's domain for a long time; opt in with the two settings above.
    "security.W005",
    "security.W021",
    # W001-W003 look for Django's middleware by name; cronsvc runs subclasses of
    # it (cronsvc.http.middleware) and checks for those instead (cronsvc.checks).
    "security.W001",
    "security.W002",
    "security.W003",
]

ROOT_URLCONF = "cronsvc.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "cronsvc" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

WSGI_APPLICATION = "cronsvc.wsgi.application"
ASGI_APPLICATION = "cronsvc.asgi.application"

# 4, not 8: the sync views' Python shares one GIL per process, and under a
# burst of writes 8 threads waiting for it held the health check and a count
# longer (README, "Waiting under load", session 12).
web_threads_default = 4
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'cronsvc.sqlite3'}")}
# Each thread keeps its connection (the API's threads are bounded pools,
# cronsvc/http/handler.py and cronsvc/offloop.py): opening one costs more than
# most requests.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # API, worker and beat share one file: writers take the lock up front
    # (IMMEDIATE) and wait for each other instead of failing with
    # "database is locked"; WAL lets readers run beside a writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
            ),
        }
    )
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})
    if env.bool("CRONSVC_DB_POOL", default=False):
        # The API under ASGI (cronsvc.asgi turns this on): Django's pool
        # (psycopg_pool) lends each request a connection, at most the offloop
        # threads plus the web threads per process
        # (cronsvc.topology.connection_budget counts the same).
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        # Checked when lent after a while unused, not before every request
        # (cronsvc.pgpool): Django's check is a round trip per request.
        DATABASES["default"]["ENGINE"] = "cronsvc.pgpool"
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 2,
            "max_size": env.int("CRONSVC_OFFLOOP_THREADS", default=8)
            + env.int("CRONSVC_WEB_THREADS", default=web_threads_default),
            "timeout": 30,
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("CRONSVC_STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# WhiteNoise serves the apps' static files (admin, the /docs UI) straight from
# the installed packages too, so `manage.py dev` needs no collectstatic; the
# image also serves them collected into STATIC_ROOT.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}

# --- API -------------------------------------------------------------------
# Bodies larger than this answer 413 before anything is parsed.
CRONSVC_MAX_BODY_BYTES = env.int("CRONSVC_MAX_BODY_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CRONSVC_MAX_BODY_BYTES
# Comma-separated keys accepted in the x-api-key header. Empty: no auth.
CRONSVC_API_KEYS = env.list("CRONSVC_API_KEYS", default=[])
# Request bodies nested deeper than this are refused with a 422 (cronsvc/http/parsers.py).
CRONSVC_MAX_JSON_DEPTH = env.int("CRONSVC_MAX_JSON_DEPTH", default=64)
# A production server refuses to start without keys unless this is set.
CRONSVC_ALLOW_ANONYMOUS = env.bool("CRONSVC_ALLOW_ANONYMOUS", default=False)
# GET /metrics without an API key or custom auth (for a Prometheus on a private network).
CRONSVC_METRICS_PUBLIC = env.bool("CRONSVC_METRICS_PUBLIC", default=False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cronsvc.http.auth.LangGraphAuthentication",
        "cronsvc.http.auth.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cronsvc.http.auth.HasApiKey"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PARSER_CLASSES": ["cronsvc.http.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["cronsvc.http.outputs.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "cronsvc.http.outputs.ContentNegotiation",
    "EXCEPTION_HANDLER": "cronsvc.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "cronsvc.http.schema.ApiSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "cronsvc",
    "DESCRIPTION": "LangGraph Server-compatible API for assistants, threads, runs and crons.",
    "VERSION": "0.1.0",
    # /docs loads Swagger UI from our own static files (drf-spectacular-sidecar),
    # so it renders without a network.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TAGS": [
        {"name": "assistants", "description": "Assistants: a graph with its configuration."},
        {"name": "threads", "description": "Threads and their state."},
        {"name": "runs", "description": "Runs of an assistant on a thread."},
        {"name": "crons", "description": "Runs on a schedule."},
        {"name": "system", "description": "Liveness and health."},
        {"name": "mcp", "description": "The assistants as Model Context Protocol tools."},
    ],
    # /openapi.json documents the API, not itself.
    "SERVE_INCLUDE_SCHEMA": False,
    # Request components apart from response ones (`AssistantCreateRequest`, `Assistant`).
    "COMPONENT_SPLIT_REQUEST": True,
    # Our patch serializers have only optional fields: no separate `Patched...` component.
    "COMPONENT_SPLIT_PATCH": False,
    # A computed output field (next_run_date) is required only where its serializer says.
    "COMPONENT_NO_READ_ONLY_REQUIRED": True,
    # One name for a choice set that several fields share.
    "ENUM_NAME_OVERRIDES": {
        "OnCompletionEnum": ["delete", "keep"],
        "MultitaskStrategyEnum": ["reject", "rollback", "interrupt", "enqueue"],
        "RunStatusEnum": "runs.wire.RUN_STATUSES",
        "ThreadStatusEnum": "threads.wire.THREAD_STATUSES",
    },
}

# --- graphs ----------------------------------------------------------------
# The LangGraph CLI's config file: {"graphs": {"agent": "./examples/agent.py:graph"}}
LANGGRAPH_CONFIG = Path(env("LANGGRAPH_CONFIG", default=str(BASE_DIR / "langgraph.json")))
# A langgraph_sdk.Auth used instead of langgraph.json's `auth` (tests); None: the file's.
CRONSVC_AUTH = None
# On SQLite, LangGraph's checkpoints live in their own file beside the database.
CRONSVC_SQLITE_CHECKPOINTS = DATA_DIR / "checkpoints.sqlite3"

# --- Celery ----------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Above the longest run: a message unacked this long is redelivered.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "crons.scheduler:CronScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="cronsvc")
# Workers. A run mostly waits on LLM calls (I/O), so the worker command
# (cronsvc/topology.py) uses the threads pool: many runs per process for little
# memory and CPU. CELERY_WORKER_CONCURRENCY is threads per worker process;
# each busy thread can hold one Django connection and one checkpointer
# connection (see the connection budget in the README).
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=8)
# Seconds a task (one drain of a thread's pending runs) may take: the soft limit
# raises SoftTimeLimitExceeded in the task, the hard limit kills it. Celery
# enforces both in the prefork pool only; the threads pool does not interrupt
# a running thread. Keep the worker's stop_grace_period above the hard limit
# so a warm shutdown (SIGTERM) lets in-flight runs finish.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise environ.ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT"
    )
if (
    CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", float("inf"))
    <= CELERY_TASK_TIME_LIMIT
):
    # Redis redelivers a message unacknowledged this long: to a second worker
    # while the first still runs it, if a run may outlast it.
    raise environ.ImproperlyConfigured(
        "CELERY_VISIBILITY_TIMEOUT must be above CELERY_TASK_TIME_LIMIT"
    )
# Seconds between worker heartbeats, and the age after which a worker (its
# last heartbeat) or beat (its last scheduler lease renewal) counts as dead
# (GET /health, manage.py healthcheck).
CRONSVC_HEARTBEAT_INTERVAL = env.float("CRONSVC_HEARTBEAT_INTERVAL", default=10)
CRONSVC_HEARTBEAT_STALE = env.float("CRONSVC_HEARTBEAT_STALE", default=60)

# --- scheduler -------------------------------------------------------------
# Longest sleep of beat between ticks (seconds).
CRONSVC_BEAT_MAX_INTERVAL = env.float("CRONSVC_BEAT_MAX_INTERVAL", default=1.0)
# A missed tick older than this (seconds) is skipped, not fired.
CRONSVC_MISSED_TICK_GRACE = env.int("CRONSVC_MISSED_TICK_GRACE", default=300)
# Pending runs a thread may hold; a tick beyond it is rejected.
CRONSVC_MAX_PENDING_RUNS_PER_THREAD = env.int("CRONSVC_MAX_PENDING_RUNS_PER_THREAD", default=10)
# Seconds ahead of their instant that beat prepares batchable crons' ticks and
# pending runs (workers do not claim them before the instant), so a second
# with many due crons only costs the wake-up messages. 0 disables.
CRONSVC_DISPATCH_LOOKAHEAD = env.float("CRONSVC_DISPATCH_LOOKAHEAD", default=10)
# Wake-up messages a fired batch publishes at least (each wakes one worker
# slot, which then drains ready runs until none is left). Beat publishes one per
# live worker slot, from the workers' heartbeats, when there are more.
CRONSVC_WAKE_FANOUT = env.int("CRONSVC_WAKE_FANOUT", default=16)
# The beat lease: a standby takes over when the holder has not renewed for this long.
CRONSVC_BEAT_LEASE_SECONDS = env.float("CRONSVC_BEAT_LEASE_SECONDS", default=10)
# Connections each process's checkpointer pool may open (PostgreSQL).
CRONSVC_CHECKPOINTER_POOL_SIZE = env.int("CRONSVC_CHECKPOINTER_POOL_SIZE", default=4)
# The checkpointer's statements are prepared on each pooled connection from
# their first use, as LangGraph's own PostgresSaver.from_conn_string does (a
# dozen statements per run: less parsing and planning, on both sides). Turn
# off behind a pooler that cannot keep prepared statements (PgBouncer in
# transaction mode before 1.21 or without max_prepared_statements).
CRONSVC_CHECKPOINTER_PREPARE = env.bool("CRONSVC_CHECKPOINTER_PREPARE", default=True)
# Longest a run may execute (checked between graph steps); then it ends as "timeout".
CRONSVC_RUN_TIMEOUT = env.float("CRONSVC_RUN_TIMEOUT", default=600)
# How long /runs/wait and join wait for a run, and a stream stays open before the
# client resumes it (seconds).
CRONSVC_WAIT_TIMEOUT = env.float("CRONSVC_WAIT_TIMEOUT", default=300)
# Seconds without events after which a stream sends a keep-alive comment.
CRONSVC_STREAM_HEARTBEAT = env.float("CRONSVC_STREAM_HEARTBEAT", default=5)
# Run streams (stream, join_stream) one API process keeps open at once; one more
# is answered 503 {"detail": ...} until one ends.
CRONSVC_MAX_OPEN_STREAMS = env.int("CRONSVC_MAX_OPEN_STREAMS", default=1000)
# Threads of each API process's executor for the async views' database work
# (cronsvc/offloop.py): each keeps one database connection.
CRONSVC_OFFLOOP_THREADS = env.int("CRONSVC_OFFLOOP_THREADS", default=8)
# Threads of each API process that run its sync views (cronsvc/http/handler.py):
# the requests a process serves at once beside the waiting ones.
CRONSVC_WEB_THREADS = env.int("CRONSVC_WEB_THREADS", default=web_threads_default)
# Niceness a worker process (runs and webhooks) takes as it starts: on a
# machine whose cores the workers saturate, the API (its health check) and
# beat (on-time dispatch) keep their CPU, and the runs take what is left.
# 0: none. Processes on one host only; containers weigh each other by their
# CPU shares instead (docker-compose.yml).
CRONSVC_WORKER_NICE = env.int("CRONSVC_WORKER_NICE", default=5)
# PostgreSQL: each API process LISTENs (one connection) for runs' changes, which
# wake its waits and streams at once; off, they poll (runs/waiters.py).
CRONSVC_RUN_LISTENER = env.bool("CRONSVC_RUN_LISTENER", default=True)
# Seconds after a stateless run (on_completion="delete") finishes before its thread goes.
CRONSVC_STATELESS_THREAD_GRACE = env.float("CRONSVC_STATELESS_THREAD_GRACE", default=2)

# --- durability: run leases, reaper, reconciler ------------------------------
# A running run's lease: its worker renews it every third of this while the
# graph runs; the reaper returns a run whose lease expired (its worker died) to
# the queue, or errors it once it has been attempted CRONSVC_RUN_MAX_ATTEMPTS times.
CRONSVC_RUN_LEASE_SECONDS = env.float("CRONSVC_RUN_LEASE_SECONDS", default=60)
CRONSVC_RUN_MAX_ATTEMPTS = env.int("CRONSVC_RUN_MAX_ATTEMPTS", default=3)
# Seconds between reaper passes (runs.reap) and runs it handles per pass.
CRONSVC_REAP_INTERVAL = env.float("CRONSVC_REAP_INTERVAL", default=15)
CRONSVC_REAP_BATCH = env.int("CRONSVC_REAP_BATCH", default=100)
# A run ready and still pending this many seconds gets a fresh wake-up (its
# message was lost); runs.reconcile runs every CRONSVC_RECONCILE_INTERVAL
# seconds and publishes at most CRONSVC_RECONCILE_MAX_WAKES wake-ups a pass.
CRONSVC_RECONCILE_AFTER = env.float("CRONSVC_RECONCILE_AFTER", default=60)
CRONSVC_RECONCILE_INTERVAL = env.float("CRONSVC_RECONCILE_INTERVAL", default=30)
CRONSVC_RECONCILE_MAX_WAKES = env.int("CRONSVC_RECONCILE_MAX_WAKES", default=16)
if CRONSVC_RUN_LEASE_SECONDS <= 0 or CRONSVC_RUN_MAX_ATTEMPTS < 1:
    raise environ.ImproperlyConfigured(
        "CRONSVC_RUN_LEASE_SECONDS must be positive and CRONSVC_RUN_MAX_ATTEMPTS at least 1"
    )

# --- webhooks --------------------------------------------------------------
# POST of a finished run to its `webhook`, by webhook workers (`--webhooks`) from
# their own queue, <CELERY_QUEUE>-webhooks (cronsvc.celery): the deadline of one
# attempt in seconds (connect, send and the whole answer, redirects included),
# attempts at most, first retry delay (doubled each retry).
CRONSVC_WEBHOOK_TIMEOUT = env.float("CRONSVC_WEBHOOK_TIMEOUT", default=10)
CRONSVC_WEBHOOK_MAX_ATTEMPTS = env.int("CRONSVC_WEBHOOK_MAX_ATTEMPTS", default=5)
CRONSVC_WEBHOOK_BACKOFF = env.float("CRONSVC_WEBHOOK_BACKOFF", default=2)
# Targets on loopback, private, link-local, shared or metadata addresses are
# refused unless listed here: comma-separated host names and IPs/CIDRs.
CRONSVC_WEBHOOK_ALLOWLIST = env.list("CRONSVC_WEBHOOK_ALLOWLIST", default=[])

# --- retention -------------------------------------------------------------
# Finished runs and ticks older than this many days are deleted (0: keep all).
CRONSVC_RETENTION_DAYS = env.float("CRONSVC_RETENTION_DAYS", default=30)
# Checkpoints kept per (thread, namespace), newest first (0: keep all).
CRONSVC_CHECKPOINTS_KEEP = env.int("CRONSVC_CHECKPOINTS_KEEP", default=50)
# Seconds between prune passes (runs.prune); rows (or threads, for
# checkpoints) deleted per batch, and batches per pass.
CRONSVC_PRUNE_INTERVAL = env.float("CRONSVC_PRUNE_INTERVAL", default=3600)
CRONSVC_PRUNE_BATCH = env.int("CRONSVC_PRUNE_BATCH", default=500)
CRONSVC_PRUNE_MAX_BATCHES = env.int("CRONSVC_PRUNE_MAX_BATCHES", default=20)


# cronsvc's own periodic tasks, run by the same beat as the crons.
# Seconds between sweeps of expired store items (store.sweep; a no-op without
# "store": {"ttl": ...} in langgraph.json) and of expired threads (runs.sweep_ttl;
# threads.ttl): langgraph.json's `<section>.ttl.sweep_interval_minutes` wins.
def _ttl_sweep_interval(section: str, variable: str, default: float) -> float:
    try:
        with LANGGRAPH_CONFIG.open() as fh:
            ttl = (json.load(fh).get(section) or {}).get("ttl") or {}
    except (OSError, ValueError, AttributeError):
        ttl = {}
    minutes = ttl.get("sweep_interval_minutes") if isinstance(ttl, dict) else None
    if isinstance(minutes, (int, float)) and minutes > 0:
        return float(minutes) * 60
    return env.float(variable, default=default)


CRONSVC_STORE_SWEEP_INTERVAL = _ttl_sweep_interval("store", "CRONSVC_STORE_SWEEP_INTERVAL", 3600)
CRONSVC_THREAD_SWEEP_INTERVAL = _ttl_sweep_interval(
    "checkpointer", "CRONSVC_THREAD_SWEEP_INTERVAL", 300
)
CELERY_BEAT_SCHEDULE = {
    "runs.reap": {"task": "runs.reap", "schedule": CRONSVC_REAP_INTERVAL},
    "runs.reconcile": {"task": "runs.reconcile", "schedule": CRONSVC_RECONCILE_INTERVAL},
    "runs.prune": {"task": "runs.prune", "schedule": CRONSVC_PRUNE_INTERVAL},
    "store.sweep": {"task": "store.sweep", "schedule": CRONSVC_STORE_SWEEP_INTERVAL},
    "runs.sweep_ttl": {"task": "runs.sweep_ttl", "schedule": CRONSVC_THREAD_SWEEP_INTERVAL},
}
