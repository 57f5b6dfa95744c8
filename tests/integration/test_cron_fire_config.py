"""Issue 14, must-show 5: a run fired by the scheduler's tick (crons.ticking.fire_due,
driven by a settable clock) carries the cron's id in config.configurable, and its
metadata includes the cron's metadata as patched after the cron was created."""

import datetime as dt

import pytest

from crons import ticking
from crons.models import Tick
from crons.services import cron_update
from runs.models import Run
from tests.factories import make_cron, z

pytestmark = pytest.mark.django_db


def test_fired_run_carries_cron_id_and_the_patched_metadata(parked_runs):
    start = z("2026-05-01T00:00:00Z")
    cron = make_cron(
        "* * * * *",
        start=start,
        payload={"input": {}, "config": {"configurable": {"model": "small"}}},
        metadata={"team": "ops", "stage": "draft"},
    )
    cron_update(
        cron=cron,
        metadata={"team": "platform", "owner": "ada"},
        now=start + dt.timedelta(seconds=10),
    )
    ticking.fire_due(now=start + dt.timedelta(minutes=1))
    ticking.advance()

    tick = Tick.objects.get(cron=cron)
    assert tick.status == Tick.Status.FIRED
    run = Run.objects.get(cron=cron)
    configurable = run.kwargs["config"]["configurable"]
    assert configurable["cron_id"] == str(cron.cron_id)
    assert configurable["model"] == "small"
    # The metadata as patched, not as created.
    assert run.metadata["team"] == "platform"
    assert run.metadata["owner"] == "ada"
    assert run.metadata["cron_id"] == str(cron.cron_id)
