"""The API process starts its threads with the application, and a request to
an async view (join, wait, stream, cancel) starts none: under Django's
ThreadSensitiveContext each such request started a thread of its own for its
signals, and the event loop waited for each one to start (cronsvc.http.handler)."""

import asyncio
import json
import threading

import pytest
from django.conf import settings

from cronsvc.http.handler import Handler
from runs import waiters
from runs.models import Run
from tests.factories import make_run, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


async def asgi_get(app, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI application, as uvicorn calls it."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    received = False
    sent: list[dict] = []

    async def receive():
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def test_the_handler_starts_its_threads_and_an_async_view_starts_none(monkeypatch):
    app = Handler()
    names = {t.name for t in threading.enumerate()}
    assert sum(n.startswith("web_") for n in names) == settings.CRONSVC_WEB_THREADS
    assert sum(n.startswith("offloop") for n in names) == settings.CRONSVC_OFFLOOP_THREADS

    # The run listener starts with the server (the lifespan test below) or
    # with the first wait of the process, once.
    waiters.listener_start()
    runs = [make_run(make_thread()) for _ in range(5)]
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(status=Run.Status.SUCCESS)
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread):
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)

    async def joins():
        return [
            await asgi_get(app, f"/threads/{run.thread_id}/runs/{run.run_id}/join") for run in runs
        ]

    answers = asyncio.run(joins())
    assert [status for status, _ in answers] == [200] * 5
    assert all(isinstance(json.loads(body), dict) for _, body in answers)
    # asyncio.run's own default-executor shutdown aside, no thread was started.
    assert started == []


def test_the_server_start_runs_the_startup_hooks_and_the_application_starts_the_run_listener():
    """The run listener starts at the ASGI lifespan's startup, when the server
    starts (on the database it serves), not when the application is built
    (pytest imports it before setting up the test database) nor at the first
    wait (a burst of waits polled until it had connected)."""
    from cronsvc.asgi import application

    assert waiters.listener_start in application._on_startup
    calls: list[str] = []
    app = Handler(on_startup=[lambda: calls.append("started")])
    assert calls == []  # not on building it
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict] = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert calls == ["started"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_path_is_resolved_once_for_async_views_as_for_sync_ones(monkeypatch):
    """Django resolves each request's path against every URL pattern; the
    handler resolves a path once per process, for both kinds of view."""
    from django.urls import resolvers

    from cronsvc.http import handler

    handler._resolved.cache_clear()
    app = Handler()
    runs = [make_run(make_thread()) for _ in range(3)]
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(status=Run.Status.SUCCESS)
    thread_id = runs[0].thread_id
    paths = [
        f"/threads/{thread_id}/runs/{runs[0].run_id}/join",  # async
        f"/threads/{thread_id}/runs/{runs[0].run_id}",  # sync
    ]
    resolved: list[str] = []
    resolve = resolvers.URLResolver.resolve

    def counted(self, path):
        if self.pattern.regex.pattern == "^/":  # the root resolver: once per resolution
            resolved.append(path)
        return resolve(self, path)

    monkeypatch.setattr(resolvers.URLResolver, "resolve", counted)

    async def requests():
        return [await asgi_get(app, path) for path in paths * 3]

    assert [status for status, _ in asyncio.run(requests())] == [200] * 6
    assert sorted(resolved) == sorted(paths)
