"""Celery task bodies of the store: each calls one function."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from store.backend import store_sweep


@shared_task(
    name="store.sweep",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
)
def sweep() -> int:
    """Periodic (CRONSVC_STORE_SWEEP_INTERVAL, or langgraph.json's
    store.ttl.sweep_interval_minutes): delete expired store items."""
    return store_sweep()
