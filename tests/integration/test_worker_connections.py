"""Workers keep their database connection from one task to the next."""

from types import SimpleNamespace

import pytest
from django.db import connection

from cronsvc import celery as cronsvc_celery


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_connection_across_tasks_unless_it_is_unusable():
    cronsvc_celery.reuse_connections_across_tasks()
    fixups = [f for f in cronsvc_celery.app._fixups if f is not None]
    worker_fixup = fixups[0].worker_fixup
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))

    connection.ensure_connection()
    raw = connection.connection
    worker_fixup.on_task_postrun(sender=task)
    worker_fixup.on_task_prerun(sender=task)
    assert connection.connection is raw  # Celery's fixup alone closes it here

    # A connection that errored and no longer answers is closed, as between requests.
    connection.errors_occurred = True
    raw.close()
    worker_fixup.on_task_postrun(sender=task)
    assert connection.connection is None
