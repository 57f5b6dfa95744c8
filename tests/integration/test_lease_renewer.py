"""The worker process's one lease renewer keeps its running runs' leases."""

import time

import pytest
from django.utils import timezone

from runs import lifecycle, wakeups
from runs.leases import LeaseKeeper, LeaseRenewer
from runs.models import Run
from tests.factories import make_run
from threads.services import thread_create


@pytest.mark.django_db(transaction=True)
def test_the_renewer_renews_a_lease_due_before_its_next_beat(monkeypatch):
    monkeypatch.setattr(wakeups, "wake_thread", lambda thread_id: None)
    make_run(thread_create())
    run = lifecycle.run_claim_ready()
    renewer = LeaseRenewer()
    renewer.start()  # nothing held: its next beat is a whole (60 s) lease interval away
    time.sleep(0.2)

    keeper = LeaseKeeper(run)
    keeper.interval = 0.2  # as a shorter lease would be
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now())
    claimed_at = keeper.renewed_at
    renewer.add(keeper)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and keeper.renewed_at == claimed_at:
            time.sleep(0.05)
        assert keeper.renewed_at != claimed_at
        assert Run.objects.get(pk=run.pk).lease_expires_at > timezone.now()
        assert not keeper.lost.is_set()
    finally:
        renewer.discard(keeper)
