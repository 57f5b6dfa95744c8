"""The Celery app: configuration comes from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from cronsvc import checkpointer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cronsvc.settings")

app = Celery("cronsvc")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# By path: the step is loaded when a worker starts, after Django is set up.
app.steps["worker"].add("cronsvc.heartbeats:WorkerHeartbeatStep")


@worker_process_init.connect
def _reset_checkpointer_after_fork(**_: object) -> None:
    # A pool of database connections must not be shared across a fork: each
    # worker process opens its own saver on first use.
    checkpointer.reset()


@worker_ready.connect
def _open_checkpointer(**_: object) -> None:
    # Open the saver (and its connection pool) when the worker starts, not on
    # its first run.
    checkpointer.get_saver()
