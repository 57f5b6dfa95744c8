"""Waiting holds no thread (issue 12): the waiting endpoints are async views on
the ASGI server (the uvicorn live server), waiting on the process's poller and
reaching the database through the bounded executor (cronsvc.offloop). Behaviour,
not timing: many joins stay open while `/ok` answers, they all end when their
runs do, the stream cap answers 503, and the API key is checked on every async
view before any stream starts."""

import asyncio
import threading
import time

import httpx
import pytest

from cronsvc.celery import app
from cronsvc.services import assistants_ensure_defaults
from runs.models import Run
from runs.streaming import StreamSlot
from tests.conftest import QUEUE, wait_until
from tests.factories import make_run, make_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(
        transaction=True,
        available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"],
    ),
]

JOINS = 60


@pytest.fixture(autouse=True)
def parked(monkeypatch):
    """Runs created here are never executed: their wake-ups go to a queue no
    worker reads (purged afterwards); the tests finish them by hand."""
    assistants_ensure_defaults()
    parked_queue = f"{QUEUE}-parked-waiting"
    monkeypatch.setattr(app.conf, "task_default_queue", parked_queue)
    yield
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(parked_queue)


def offloop_threads() -> int:
    return sum(t.name.startswith("offloop") for t in threading.enumerate())


def test_many_open_joins_do_not_block_ok_and_all_end_with_their_runs(live_server, settings):
    settings.CRONSVC_WAIT_TIMEOUT = 120
    runs = [make_run(make_thread()) for _ in range(JOINS)]

    async def scenario():
        limits = httpx.Limits(max_connections=JOINS + 10, max_keepalive_connections=JOINS + 10)
        async with httpx.AsyncClient(base_url=live_server.url, limits=limits, timeout=60) as client:
            joins = [
                asyncio.create_task(client.get(f"/threads/{r.thread_id}/runs/{r.run_id}/join"))
                for r in runs
            ]
            await asyncio.sleep(1)  # every join is in, and waiting
            started = time.monotonic()
            ok = [(await client.get("/ok")).status_code for _ in range(5)]
            ok_seconds = time.monotonic() - started
            still_open = sum(not j.done() for j in joins)
            threads_while_waiting = offloop_threads()
            # The runs end (as a worker would record it): every join answers.
            await asyncio.to_thread(
                lambda: Run.objects.filter(pk__in=[r.pk for r in runs]).update(
                    status="success", output={"done": True}
                )
            )
            answers = await asyncio.wait_for(asyncio.gather(*joins), timeout=30)
            return ok, ok_seconds, still_open, threads_while_waiting, answers

    ok, ok_seconds, still_open, threads, answers = asyncio.run(scenario())

    assert ok == [200] * 5
    assert still_open == JOINS  # /ok answered while every join was waiting
    assert ok_seconds < 10  # lenient: blocked would mean the wait timeout (120 s)
    assert threads <= settings.CRONSVC_OFFLOOP_THREADS  # the executor is bounded
    assert [a.status_code for a in answers] == [200] * JOINS
    assert {a.json()["done"] for a in answers} == {True}


def test_cancels_that_wait_hold_no_web_thread(live_server, settings):
    # More waiting cancels than the process has web threads: /ok still answers.
    settings.CRONSVC_WAIT_TIMEOUT = 120
    n = 2 * settings.CRONSVC_WEB_THREADS + 4
    runs = [make_run(make_thread()) for _ in range(n)]
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(status="running", attempts=1)

    async def scenario():
        limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
        async with httpx.AsyncClient(base_url=live_server.url, limits=limits, timeout=60) as client:
            cancels = [
                asyncio.create_task(
                    client.post(f"/threads/{r.thread_id}/runs/{r.run_id}/cancel?wait=true")
                )
                for r in runs
            ]

            def flagged() -> bool:
                return (
                    Run.objects.filter(
                        pk__in=[r.pk for r in runs], cancel_action="interrupt"
                    ).count()
                    == n
                )

            await asyncio.to_thread(wait_until, flagged, 30)
            ok = [(await client.get("/ok")).status_code for _ in range(3)]
            still_open = sum(not c.done() for c in cancels)
            # The workers stop them (as a worker would record it): every cancel answers.
            await asyncio.to_thread(
                lambda: Run.objects.filter(pk__in=[r.pk for r in runs]).update(
                    status="interrupted", output={"stopped": True}
                )
            )
            answers = await asyncio.wait_for(asyncio.gather(*cancels), timeout=30)
            return ok, still_open, answers

    ok, still_open, answers = asyncio.run(scenario())

    assert ok == [200] * 3
    assert still_open == n  # /ok answered while every cancel was waiting
    assert [a.status_code for a in answers] == [200] * n
    assert {a.json()["stopped"] for a in answers} == {True}


def test_the_stream_cap_answers_503_and_frees_its_place_when_a_stream_ends(live_server, settings):
    # Two more than the shared live server has open now (other tests' streams
    # may still be winding down).
    settings.CRONSVC_MAX_OPEN_STREAMS = StreamSlot.open + 2
    settings.CRONSVC_STREAM_HEARTBEAT = 0.2
    run = make_run(make_thread())
    url = f"{live_server.url}/threads/{run.thread_id}/runs/{run.run_id}/stream"

    with httpx.Client(timeout=30) as client:
        with client.stream("GET", url) as first, client.stream("GET", url) as second:
            # Iterators kept: a dropped one closes its connection (a disconnect).
            first_lines, second_lines = first.iter_lines(), second.iter_lines()
            assert next(first_lines) == "event: metadata"
            assert next(second_lines) == "event: metadata"

            refused = client.get(url)
            assert refused.status_code == 503
            assert "CRONSVC_MAX_OPEN_STREAMS" in refused.json()["detail"]
            runs_before = Run.objects.count()
            new_stream = client.post(
                f"{live_server.url}/runs/stream", json={"assistant_id": "agent"}
            )
            assert new_stream.status_code == 503
            assert Run.objects.count() == runs_before  # a refused stream starts no run

        # Both went away: their places come back once the server notices.
        def accepted():
            with client.stream("GET", url) as again:
                return again.status_code == 200

        wait_until(accepted, timeout=15)


def async_view_requests(run: Run) -> list[tuple[str, str, dict | None]]:
    thread = f"/threads/{run.thread_id}/runs"
    body = {"assistant_id": "agent"}
    return [
        ("POST", f"{thread}/wait", body),
        ("POST", "/runs/wait", body),
        ("GET", f"{thread}/{run.run_id}/join", None),
        ("POST", f"{thread}/stream", body),
        ("POST", "/runs/stream", body),
        ("GET", f"{thread}/{run.run_id}/stream", None),
        ("GET", f"/runs/{run.run_id}/stream", None),
    ]


def test_every_async_view_refuses_a_missing_or_wrong_key_before_anything_starts(
    live_server, settings
):
    settings.CRONSVC_API_KEYS = ["the-key"]
    settings.CRONSVC_WAIT_TIMEOUT = 0.05
    run = make_run(make_thread())
    runs_before = Run.objects.count()

    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        for method, path, body in async_view_requests(run):
            for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}):
                for _ in range(3):  # the refusal must not be intermittent
                    response = client.request(method, path, json=body, headers=headers)
                    assert response.status_code in (401, 403), (method, path, headers)
                    assert response.headers["content-type"] == "application/json"
                    assert "detail" in response.json()
            accepted = client.request(method, path, json=body, headers={"x-api-key": "the-key"})
            assert accepted.status_code == 200, (method, path, accepted.text)

    # Only the accepted requests started runs (4 of them create one each).
    assert Run.objects.count() == runs_before + 4
