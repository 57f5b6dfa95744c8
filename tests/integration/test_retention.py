"""Retention: finished runs and ticks older than CRONSVC_RETENTION_DAYS go,
checkpoints beyond the newest CRONSVC_CHECKPOINTS_KEEP per thread go; recent
rows, pending and running runs and a running thread's checkpoints stay; a
second pass deletes nothing."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from django.db import connection, transaction
from django.db.models.functions import Now
from langgraph.checkpoint.sqlite import SqliteSaver

from crons.models import Tick
from crons.services import cron_create
from cronsvc import checkpointer
from cronsvc.selectors import assistant_get_or_404
from examples.slow import builder as slow_builder
from runs import retention, tasks
from runs.models import Run
from runs.services import run_create
from threads.services import thread_create

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}
DAYS = dt.timedelta(days=1)


def checkpoint_counts(thread_id) -> tuple[int, int, int]:
    with connection.cursor() as cursor:
        counts = []
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            cursor.execute(f"SELECT count(*) FROM {table} WHERE thread_id = %s", [str(thread_id)])
            counts.append(cursor.fetchone()[0])
    return tuple(counts)


def run_n_times(thread, n: int) -> None:
    """Runs executed here, each in one transaction: no other worker of the
    session sees them before they have finished."""
    for _ in range(n):
        with transaction.atomic():
            run_create(thread=thread, assistant=assistant_get_or_404("agent"), kwargs=QUESTION)
            assert tasks.drain(str(thread.thread_id)) == 1


def test_prune_deletes_old_finished_runs_ticks_and_checkpoints_and_nothing_more(
    monkeypatch, settings
):
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    settings.CRONSVC_RETENTION_DAYS = 30
    settings.CRONSVC_CHECKPOINTS_KEEP = 3
    agent = assistant_get_or_404("agent")

    # Given: a thread with 4 finished runs (12 checkpoints), two of them 31 days old.
    thread = thread_create()
    run_n_times(thread, 4)
    runs = list(Run.objects.filter(thread=thread).order_by("created_at"))
    Run.objects.filter(pk__in=[r.pk for r in runs[:2]]).update(finished_at=Now() - 31 * DAYS)
    before = checkpoint_counts(thread.thread_id)
    assert before[0] == 12
    # a running run and a pending run, both created long ago, on a busy thread whose
    # checkpoints must stay while it runs;
    busy = thread_create()
    run_n_times(busy, 2)
    busy_checkpoints = checkpoint_counts(busy.thread_id)
    running = run_create(thread=busy, assistant=agent, kwargs=QUESTION)
    pending = run_create(thread=busy, assistant=agent, kwargs=QUESTION)
    Run.objects.filter(pk=running.pk).update(status="running", started_at=Now() - 40 * DAYS)
    Run.objects.filter(pk__in=[running.pk, pending.pk]).update(created_at=Now() - 40 * DAYS)
    Run.objects.filter(thread=busy, status="success").update(finished_at=Now() - 20 * DAYS)
    # ticks: 3 old, 2 recent.
    cron = cron_create(assistant=agent, schedule="* * * * *", on_run_completed="keep")
    now = dt.datetime.now(dt.UTC)
    for days in (40, 35, 31, 29, 0):
        tick = Tick.objects.create(
            cron=cron, scheduled_at=now - days * DAYS, status="skipped", reason="test"
        )
        Tick.objects.filter(pk=tick.pk).update(created_at=now - days * DAYS)

    # When
    first = retention.prune(batch=2, max_batches=10)
    ours_after_first = [checkpoint_counts(t.thread_id) for t in (thread, busy)]
    second = retention.prune(batch=2, max_batches=10)

    # Then (checkpoints are counted on this test's threads only: the
    # checkpoint tables outlive each test's flush, and a run another test left
    # to the session's worker may end, and become prunable, between two prunes)
    assert first["runs"] == 2 and first["ticks"] == 3 and first["checkpoints"] >= 9
    assert (second["runs"], second["ticks"]) == (0, 0)
    assert [checkpoint_counts(t.thread_id) for t in (thread, busy)] == ours_after_first
    assert set(Run.objects.filter(thread=thread).values_list("pk", flat=True)) == {
        r.pk for r in runs[2:]
    }
    assert set(Run.objects.filter(thread=busy).values_list("status", flat=True)) == {
        "success",
        "running",
        "pending",
    }
    assert sorted(
        round((now - t).total_seconds() / 86400)
        for t in Tick.objects.values_list("scheduled_at", flat=True)
    ) == [0, 29]
    kept = checkpoint_counts(thread.thread_id)
    assert kept[0] == 3
    assert kept[2] < before[2]
    assert kept[1] < before[1]
    assert checkpoint_counts(busy.thread_id) == busy_checkpoints
    # The newest checkpoints are whole: the thread's state still reads, and runs go on.
    graph = slow_builder.compile(checkpointer=checkpointer.get_saver())
    state = graph.get_state({"configurable": {"thread_id": str(thread.thread_id)}})
    assert [m.type for m in state.values["messages"]] == ["human", "ai"] * 4
    run_n_times(thread, 1)
    assert (
        Run.objects.filter(thread=thread).latest("created_at").output["messages"][-1]["type"]
        == "ai"
    )

    # Once the busy thread's run is over, its checkpoints are pruned too (and
    # the 3 the last run added to the first thread).
    Run.objects.filter(pk=running.pk).update(status="success", finished_at=Now())
    assert retention.prune(batch=2, max_batches=10)["checkpoints"] >= (busy_checkpoints[0] - 3) + 3
    assert checkpoint_counts(busy.thread_id)[0] == checkpoint_counts(thread.thread_id)[0] == 3
    for t in (thread, busy):
        checkpointer.delete_thread(str(t.thread_id))


def test_prune_of_the_sqlite_checkpoint_file_keeps_the_newest_per_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("SLOW_GRAPH_SECONDS", "0")
    conn = sqlite3.connect(str(tmp_path / "checkpoints.sqlite3"), check_same_thread=False)
    saver = SqliteSaver(conn)
    graph = slow_builder.compile(checkpointer=saver)
    for thread_id, turns in (("a", 3), ("b", 1)):
        for _ in range(turns):
            graph.invoke(
                {"messages": [{"role": "user", "content": "hi"}]},
                {"configurable": {"thread_id": thread_id}},
            )

    def count(table, thread_id):
        return conn.execute(
            f"SELECT count(*) FROM {table} WHERE thread_id = ?", (thread_id,)
        ).fetchone()[0]

    assert (count("checkpoints", "a"), count("checkpoints", "b")) == (9, 3)
    assert retention.prune_checkpoints_sqlite(conn, keep=4, batch=1, max_batches=5) == 5
    assert retention.prune_checkpoints_sqlite(conn, keep=4, batch=1, max_batches=5) == 0
    assert (count("checkpoints", "a"), count("checkpoints", "b")) == (4, 3)
    state = graph.get_state({"configurable": {"thread_id": "a"}})
    assert [m.type for m in state.values["messages"]] == ["human", "ai"] * 3
    conn.close()
