"""The Celery app: configuration comes from Django settings (CELERY_* names).

Two kinds of worker consume it (cronsvc/topology.py): run workers, on the
default queue (`task_default_queue`, CELERY_QUEUE), and webhook workers,
started with `--webhooks`, on `<queue>-webhooks` only (`webhook_queue`), so a
slow or huge webhook receiver never takes a run's slot.
"""

import os

import click
from celery import Celery, bootsteps
from celery.signals import worker_init, worker_process_init, worker_ready
from django.conf import settings
from django.db import close_old_connections

from cronsvc import autogroup, checkpointer, heap
from store import backend as store_backend

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cronsvc.settings")

app = Celery("cronsvc")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

WEBHOOK_QUEUE_SUFFIX = "-webhooks"
ROLE_RUNS, ROLE_WEBHOOKS = "runs", "webhooks"


def webhook_queue() -> str:
    """The queue webhook deliveries are published to and webhook workers consume."""
    return f"{app.conf.task_default_queue}{WEBHOOK_QUEUE_SUFFIX}"


def worker_role(worker: object) -> str:
    """ROLE_WEBHOOKS for a worker started with `--webhooks`, else ROLE_RUNS."""
    return ROLE_WEBHOOKS if getattr(worker, "cronsvc_webhooks", False) else ROLE_RUNS


class WebhookQueueStep(bootsteps.Step):
    """`--webhooks`: consume the webhook queue instead of the run queue."""

    label = "cronsvc webhook queue"

    def __init__(self, worker, webhooks: bool = False, **kwargs):
        super().__init__(worker, **kwargs)
        worker.cronsvc_webhooks = bool(webhooks)
        if webhooks:
            worker.setup_queues([webhook_queue()])


app.user_options["worker"].add(
    click.Option(
        ["--webhooks"],
        is_flag=True,
        default=False,
        help="cronsvc: deliver webhooks only (consume <queue>-webhooks, not the run queue).",
    )
)
app.steps["worker"].add(WebhookQueueStep)
# By path: the step is loaded when a worker starts, after Django is set up.
app.steps["worker"].add("cronsvc.heartbeats:WorkerHeartbeatStep")


@worker_init.connect
def _yield_the_cpu_to_the_api_and_beat(**_: object) -> None:
    # Before the pool's threads start, so they (and every thread a run
    # starts) inherit it: Linux keeps niceness per thread.
    if settings.CRONSVC_WORKER_NICE > 0:
        os.nice(settings.CRONSVC_WORKER_NICE)
        # A worker leading its session (as runall and supervisors start it)
        # renices its scheduling group too: os.nice alone ordered only its
        # own threads and left it the API's share of the CPU.
        autogroup.renice_own_group(settings.CRONSVC_WORKER_NICE)


def keep_task_connections(**_: object) -> None:
    """Celery's Django fixup closes the thread's database connections before
    and after every task (a new connection per task: most of a short run's
    connect cost). Instead, as Django does between requests: close only a
    connection that is broken, in a transaction it cannot leave, or older
    than CONN_MAX_AGE (with CONN_HEALTH_CHECKS checked on its next use)."""
    close_old_connections()


@worker_init.connect
def reuse_connections_across_tasks(sender: object = None, **_: object) -> None:
    # Connected after the fixup's own worker_init receiver (cronsvc.celery is
    # imported after Celery installs its fixups), which has just installed
    # its task_prerun/task_postrun handlers; they call `close_database`.
    for fixup in getattr(app, "_fixups", None) or ():
        worker_fixup = getattr(fixup, "worker_fixup", None)
        if worker_fixup is not None and hasattr(worker_fixup, "close_database"):
            worker_fixup.close_database = keep_task_connections


@worker_process_init.connect
def _reset_checkpointer_after_fork(**_: object) -> None:
    # A pool of database connections must not be shared across a fork: each
    # worker process opens its own saver on first use.
    checkpointer.reset()
    store_backend.reset()


@worker_ready.connect
def _open_checkpointer(sender: object = None, **_: object) -> None:
    # Open the saver (and its connection pool) when a run worker starts, not
    # on its first run. A webhook worker never reads checkpoints.
    if worker_role(getattr(sender, "controller", None)) == ROLE_RUNS:
        checkpointer.get_saver()


@worker_ready.connect
def _freeze_the_started_heap(**_: object) -> None:
    # After the saver is open and the pool's threads started (cronsvc.heap).
    heap.freeze_after_start()
