"""Scheduler control on the real scheduler's tick (crons.ticking.fire_due) with
a settable clock: each overlap policy while a run of the cron is still going,
start_time, and max_runs counting down to a cron that disables itself.

Runs are claimed and finished through runs.lifecycle as a worker would (the
claim reads the database's clock, long past these instants); the session's
worker never sees them (parked_runs, and each test's transaction)."""

import datetime as dt

import pytest

from crons import dispatch, ticking
from crons.models import Cron, Tick
from crons.services import cron_update
from cronsvc.errors import Invalid
from runs import lifecycle
from runs.models import Run
from tests.factories import make_cron, z
from threads.services import thread_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("parked_runs")]

START = z("2026-05-01T00:00:00Z")


def at(minute: int, second: int = 0) -> dt.datetime:
    return START + dt.timedelta(minutes=minute, seconds=second)


def tick(now):
    report = ticking.fire_due(now=now)
    ticking.advance()
    return report


def tick_of(cron: Cron, minute: int) -> Tick:
    return Tick.objects.get(cron=cron, scheduled_at=at(minute))


def run_of(cron: Cron, minute: int) -> Run:
    return Run.objects.get(cron=cron, scheduled_at=at(minute))


def start(run: Run) -> Run:
    """A worker claims `run` (pending → running)."""
    claimed = lifecycle.run_claim_next(thread_id=run.thread_id)
    assert claimed is not None and claimed.pk == run.pk
    return claimed


def finish(run: Run) -> None:
    assert lifecycle.run_finish(run_id=run.pk, status="success", attempt=run.attempts)


def claimable(run: Run) -> bool:
    run.refresh_from_db()
    head = lifecycle.run_claim_next(thread_id=run.thread_id)
    if head is None:
        return False
    assert head.pk == run.pk
    # Put it back: the test decides when it runs.
    Run.objects.filter(pk=run.pk).update(status="pending", attempts=0, started_at=None)
    return True


def policy_cron(policy: str, **kwargs) -> Cron:
    return make_cron("* * * * *", start=START, overlap_policy=policy, **kwargs)


def test_policy_crons_leave_the_batch_path():
    plain = make_cron(start=START)
    on_thread = make_cron(start=START, thread=thread_create())
    limited = make_cron(start=START, max_runs=3)
    policies = [policy_cron(p) for p in ("skip", "buffer_one", "buffer_all", "cancel_other")]
    assert plain.overlap_policy == "allow_all" and dispatch.batchable(plain)
    assert dispatch.batchable(on_thread)
    for cron in [limited, *policies]:
        assert not dispatch.batchable(cron), cron.overlap_policy
    # The query form agrees.
    batchable = set(Cron.objects.filter(dispatch.BATCHABLE).values_list("pk", flat=True))
    assert batchable == {plain.pk, on_thread.pk}


def test_allow_all_fires_beside_a_running_run():
    cron = policy_cron("allow_all")
    tick(at(1))
    first = start(run_of(cron, 1))
    tick(at(2))
    assert tick_of(cron, 2).status == "fired"
    second = run_of(cron, 2)
    assert second.after_run_id is None and claimable(second)
    assert first.status == "running"


def test_skip_records_the_tick_skipped_while_a_run_is_going():
    cron = policy_cron("skip")
    tick(at(1))
    first = start(run_of(cron, 1))
    report = tick(at(2))
    skipped = tick_of(cron, 2)
    assert (report.fired, report.skipped) == (0, 1)
    assert skipped.status == "skipped" and skipped.run_id is None
    assert skipped.reason == f"overlap_policy skip: run {first.run_id} is still running"
    assert not Run.objects.filter(cron=cron, scheduled_at=at(2)).exists()
    finish(first)
    tick(at(3))
    assert tick_of(cron, 3).status == "fired"
    # A run pending at or past its instant (no worker took it yet) overlaps too.
    tick(at(4))
    assert tick_of(cron, 4).reason.startswith(
        f"overlap_policy skip: run {run_of(cron, 3).run_id} is still pending"
    )
    assert Cron.objects.get(pk=cron.pk).next_run_date == at(5)


def test_a_pending_run_without_an_instant_overlaps():
    cron = policy_cron("skip")
    tick(at(1))
    # As a manual trigger's run is stored: no scheduled instant, due at once.
    Run.objects.filter(cron=cron).update(scheduled_at=None)
    tick(at(2))
    assert tick_of(cron, 2).status == "skipped"


def test_a_run_prepared_for_an_instant_to_come_does_not_overlap():
    cron = policy_cron("skip")
    # A run of the cron whose instant (00:05) has not come at 00:01.
    dispatch.cron_run_now(cron=cron, now=at(5))
    assert run_of(cron, 5).status == "pending"
    tick(at(1))
    assert tick_of(cron, 1).status == "fired"


def test_buffer_one_keeps_one_tick_waiting_and_starts_it_when_the_run_ends(
    monkeypatch, django_capture_on_commit_callbacks
):
    woken = []
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: woken.append(thread_id))
    cron = policy_cron("buffer_one")
    tick(at(1))
    first = start(run_of(cron, 1))
    tick(at(2))
    buffered = tick_of(cron, 2)
    assert buffered.status == "fired"
    assert buffered.reason == f"overlap_policy buffer_one: buffered until run {first.run_id} ends"
    second = run_of(cron, 2)
    assert (second.status, second.after_run_id) == ("pending", first.run_id)
    assert not claimable(second)
    assert lifecycle.run_claim_ready() is None  # no worker takes it while the first runs
    # A third tick while one waits: skipped.
    tick(at(3))
    third = tick_of(cron, 3)
    assert third.status == "skipped"
    assert third.reason == f"overlap_policy buffer_one: run {second.run_id} is already buffered"
    # The first run ends: the buffered one's thread is woken, and it starts.
    with django_capture_on_commit_callbacks(execute=True):
        finish(first)
    assert second.thread_id in woken
    second = start(second)
    # Running now: the next tick is buffered behind it.
    tick(at(4))
    assert run_of(cron, 4).after_run_id == second.run_id
    assert [t.status for t in Tick.objects.filter(cron=cron).order_by("scheduled_at")] == [
        "fired",
        "fired",
        "skipped",
        "fired",
    ]


def test_buffer_all_queues_every_tick_one_after_the_other():
    cron = policy_cron("buffer_all")
    tick(at(1))
    first = start(run_of(cron, 1))
    for minute in (2, 3, 4):
        tick(at(minute))
    runs = [run_of(cron, m) for m in (2, 3, 4)]
    assert [t.status for t in Tick.objects.filter(cron=cron)] == ["fired"] * 4
    # A chain: each waits for the one before.
    assert [r.after_run_id for r in runs] == [first.run_id, runs[0].run_id, runs[1].run_id]
    assert not any(claimable(r) for r in runs)
    finish(first)
    assert claimable(runs[0]) and not claimable(runs[1])
    finish(start(runs[0]))
    assert claimable(runs[1]) and not claimable(runs[2])
    # A buffered run whose predecessor is gone (deleted) is not held up.
    Run.objects.filter(pk=runs[1].pk).delete()
    assert claimable(runs[2])


def test_cancel_other_cancels_the_earlier_runs_then_fires():
    cron = policy_cron("cancel_other")
    tick(at(1))
    running = start(run_of(cron, 1))
    # Another run of the cron, pending at its instant (no worker took it yet):
    # a tick fired with the policy overridden once.
    dispatch.fire_tick(cron, at(1, 30), now=at(1, 30), overlap_policy="allow_all")
    pending = Run.objects.get(cron=cron, scheduled_at=at(1, 30))
    tick(at(2))
    fired = tick_of(cron, 2)
    assert fired.status == "fired"
    assert str(running.run_id) in fired.reason and str(pending.run_id) in fired.reason
    running.refresh_from_db()
    pending.refresh_from_db()
    # The running one is asked to stop (its worker does between steps); the
    # pending one ends at once.
    assert (running.status, running.cancel_action) == ("running", "interrupt")
    assert pending.status == "interrupted"
    # The new run starts once the cancelled one has stopped.
    new = run_of(cron, 2)
    assert new.after_run_id == running.run_id and not claimable(new)
    assert lifecycle.run_finish(run_id=running.pk, status="interrupted", attempt=running.attempts)
    assert claimable(new)
    # With nothing running, the next tick's run starts at once.
    tick(at(3))
    assert tick_of(cron, 3).reason.startswith("overlap_policy cancel_other: cancelled")
    assert run_of(cron, 3).after_run_id is None
    assert Run.objects.get(pk=new.pk).status == "interrupted"


def test_a_thread_cron_keeps_its_multitask_strategy():
    thread = thread_create()
    with pytest.raises(Invalid, match="multitask_strategy"):
        make_cron(start=START, thread=thread, overlap_policy="skip")
    cron = make_cron(start=START, thread=thread)
    with pytest.raises(Invalid, match="multitask_strategy"):
        cron_update(cron=cron, overlap_policy="skip")
    assert Cron.objects.get(pk=cron.pk).overlap_policy == "allow_all"


def test_start_time_no_instant_before_it_fires():
    cron = make_cron("* * * * *", start=START, start_time=at(10, 30))
    assert cron.next_run_date == at(11)
    for minute in range(1, 13):
        tick(at(minute))
    assert [t.scheduled_at for t in Tick.objects.filter(cron=cron).order_by("scheduled_at")] == [
        at(11),
        at(12),
    ]
    # An instant exactly at start_time fires; one a second before it does not.
    exact = make_cron("*/5 * * * *", start=START, start_time=at(20))
    assert exact.next_run_date == at(20)
    late = make_cron("*/5 * * * *", start=START, start_time=at(20, 1))
    assert late.next_run_date == at(25)
    # A start_time in the past changes nothing; setting one reschedules.
    past = make_cron("*/5 * * * *", start=at(3), start_time=START)
    assert past.next_run_date == at(5)
    past = cron_update(cron=past, start_time=at(40), now=at(3))
    assert past.next_run_date == at(40)


def test_max_runs_counts_down_and_disables_the_cron_after_the_last_fire():
    cron = make_cron("* * * * *", start=START, max_runs=3)
    assert (cron.max_runs, cron.remaining_runs, cron.paused_reason) == (3, 3, None)
    tick(at(1))
    assert Cron.objects.get(pk=cron.pk).remaining_runs == 2
    # A manual run (run-now) does not count.
    dispatch.cron_run_now(cron=cron, now=at(1, 30))
    tick(at(2))
    assert Cron.objects.get(pk=cron.pk).remaining_runs == 1
    tick(at(3))
    cron.refresh_from_db()
    assert (cron.remaining_runs, cron.enabled) == (0, False)
    assert cron.paused_reason == "max_runs reached: 3 scheduled run(s) fired"
    assert cron.periodic_task.enabled is False  # the mirror follows
    for minute in (4, 5):
        tick(at(minute))
    scheduled = Tick.objects.filter(cron=cron).exclude(scheduled_at=at(1, 30))
    assert [t.scheduled_at for t in scheduled.order_by("scheduled_at")] == [at(1), at(2), at(3)]
    assert Run.objects.filter(cron=cron).count() == 4  # the fired ticks' runs stay

    # Re-enabling needs a new max_runs in the same update; nothing is written otherwise.
    before = Cron.objects.filter(pk=cron.pk).values().get()
    with pytest.raises(Invalid, match="max_runs"):
        cron_update(cron=cron, enabled=True, now=at(5))
    assert Cron.objects.filter(pk=cron.pk).values().get() == before
    cron = cron_update(cron=cron, enabled=True, max_runs=2, now=at(5, 30))
    assert (cron.enabled, cron.max_runs, cron.remaining_runs, cron.paused_reason) == (
        True,
        2,
        2,
        None,
    )
    for minute in (6, 7, 8):
        tick(at(minute))
    cron.refresh_from_db()
    assert (cron.remaining_runs, cron.enabled) == (0, False)
    assert Tick.objects.filter(cron=cron, scheduled_at__gt=at(5)).count() == 2


def test_skipped_and_rejected_ticks_do_not_count():
    skip = policy_cron("skip", max_runs=5)
    tick(at(1))
    start(run_of(skip, 1))
    tick(at(2))
    assert Cron.objects.get(pk=skip.pk).remaining_runs == 4
    thread = thread_create()
    reject = make_cron(
        start=at(2), thread=thread, max_runs=5, payload={"multitask_strategy": "reject"}
    )
    tick(at(3))
    tick(at(4))
    assert [t.status for t in Tick.objects.filter(cron=reject).order_by("scheduled_at")] == [
        "fired",
        "rejected",
    ]
    assert Cron.objects.get(pk=reject.pk).remaining_runs == 4


def test_a_tick_claimed_twice_is_counted_once():
    cron = make_cron("* * * * *", start=START, max_runs=2, overlap_policy="buffer_all")
    tick(at(1))
    # A second beat with a stale view claims the same instant again.
    Cron.objects.filter(pk=cron.pk).update(next_run_date=at(1))
    report = tick(at(1, 10))
    assert report.fired == 0
    cron.refresh_from_db()
    assert cron.remaining_runs == 1 and cron.enabled
    assert Tick.objects.filter(cron=cron).count() == Run.objects.filter(cron=cron).count() == 1


def test_a_backfill_fires_every_instant_whatever_the_overlap_policy():
    from crons.services import cron_backfill

    cron = make_cron("*/10 * * * *", start=START, overlap_policy="skip", max_runs=2)
    report = cron_backfill(cron=cron, start=START, end=at(60), now=at(61))
    assert (report.instants, report.fired) == (6, 6)
    assert not Run.objects.filter(cron=cron, after_run_id__isnull=False).exists()
    # Backfills do not count against max_runs.
    assert Cron.objects.get(pk=cron.pk).remaining_runs == 2


def test_a_backfill_buffer_all_queues_its_instants_one_after_the_other():
    from crons.services import cron_backfill

    cron = make_cron("*/10 * * * *", start=START)
    report = cron_backfill(
        cron=cron, start=START, end=at(30), now=at(31), overlap_policy="buffer_all"
    )
    assert (report.instants, report.fired, report.skipped) == (3, 3, 0)
    first, second, third = (run_of(cron, m) for m in (0, 10, 20))
    assert (first.after_run_id, second.after_run_id, third.after_run_id) == (
        None,
        first.run_id,
        second.run_id,
    )
    assert claimable(first) and not claimable(second)
    finish(start(first))
    assert claimable(second) and not claimable(third)


def test_a_backfill_skip_fires_only_while_nothing_else_of_the_cron_goes():
    from crons.services import cron_backfill

    cron = make_cron("*/10 * * * *", start=START)
    # The instant at :10 was missed (recorded skipped): it is refired under the policy too.
    Tick.objects.create(cron=cron, scheduled_at=at(10), status="skipped", reason="missed")
    report = cron_backfill(cron=cron, start=START, end=at(30), now=at(31), overlap_policy="skip")
    assert (report.instants, report.fired, report.skipped) == (3, 1, 2)
    assert tick_of(cron, 0).status == "fired"
    skipped = tick_of(cron, 10)
    assert (skipped.status, skipped.kind) == ("skipped", "backfill")
    assert "overlap_policy skip" in skipped.reason
    assert tick_of(cron, 20).status == "skipped"
    # Once the first run ended, the same backfill fires what it skipped, once.
    run = start(run_of(cron, 0))
    finish(run)
    again = cron_backfill(cron=cron, start=START, end=at(30), now=at(31), overlap_policy="skip")
    assert (again.fired, again.already_fired, again.skipped) == (1, 1, 1)


def test_a_backfill_on_a_thread_cron_takes_no_overlap_policy():
    from crons.services import cron_backfill

    thread = thread_create()
    cron = make_cron("*/10 * * * *", start=START, thread=thread)
    with pytest.raises(Invalid, match="multitask_strategy"):
        cron_backfill(cron=cron, start=START, end=at(30), now=at(31), overlap_policy="skip")
    assert not Tick.objects.filter(cron=cron).exists()
