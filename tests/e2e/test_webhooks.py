"""Webhooks: a finished run is POSTed to its `webhook` as the LangGraph Server
does; 5xx answers are retried with backoff; targets on private, loopback and
metadata addresses are refused before any connection and the refusal is
recorded on the run.

The receiver runs in the test on 127.0.0.1, admitted by the allowlist. Every
test also guards the socket layer: a connection to anything but loopback
fails the test instead of leaving the machine."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import sys
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction
from django.utils import timezone

from cronsvc.celery import app
from cronsvc.selectors import assistant_get_or_404
from runs import tasks
from runs.lifecycle import run_cancel
from runs.models import Run
from runs.services import run_create
from runs.webhooks import guard, transport
from tests.conftest import QUEUE, Proc, subprocess_env, wait_until
from threads.services import thread_create

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}


class Receiver:
    """An HTTP server on 127.0.0.1 answering POSTs with scripted statuses."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver.requests.append(
                    {
                        "at": time.monotonic(),
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(body) if body else None,
                    }
                )
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def outbound(monkeypatch):
    """Connections attempted from this process; anything but loopback is blocked."""
    attempts: list[str] = []
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        attempts.append(address[0])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"connection to {address[0]} attempted")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempts


@pytest.fixture
def eager(monkeypatch):
    """Run wake-ups and webhook deliveries in this process (retries immediately)."""
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    monkeypatch.setattr(
        "runs.wakeups.deliver_webhook", lambda run_id: tasks.deliver_webhook.apply((run_id,))
    )


def run_here(thread, **kwargs) -> Run:
    """Create and execute a run in this process, in one transaction: no other
    worker of the session sees it before it has finished. Its webhook is
    delivered on commit."""
    with transaction.atomic():
        run = run_create(thread=thread, assistant=assistant_get_or_404("agent"), **kwargs)
        assert tasks.drain(str(thread.thread_id)) == 1
    run.refresh_from_db()
    return run


def finished_run_with_webhook(url: str) -> Run:
    return run_here(
        thread_create(), kwargs={**QUESTION, "webhook": url}, metadata={"source": "test"}
    )


def test_a_finished_run_is_posted_to_its_webhook(settings, receiver, outbound, eager):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    run = finished_run_with_webhook(receiver.url)

    assert [(r["method"], r["path"]) for r in receiver.requests] == [("POST", "/hook")]
    request = receiver.requests[0]
    assert request["headers"]["Host"] == f"127.0.0.1:{receiver.port}"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert set(body) == {
        "run_id",
        "thread_id",
        "assistant_id",
        "created_at",
        "updated_at",
        "status",
        "metadata",
        "kwargs",
        "multitask_strategy",
        "langsmith_session_name",
        "run_started_at",
        "run_ended_at",
        "webhook_sent_at",
        "values",
    }
    assert (body["run_id"], body["thread_id"], body["status"]) == (
        str(run.run_id),
        str(run.thread_id),
        "success",
    )
    assert body["kwargs"]["webhook"] == receiver.url
    assert body["metadata"]["source"] == "test"
    assert [m["type"] for m in body["values"]["messages"]] == ["human", "ai"]
    assert body["values"] == run.output
    assert body["run_started_at"] == run.started_at.isoformat()
    assert body["run_ended_at"] == run.finished_at.isoformat()
    assert (
        run.webhook_status,
        run.webhook_attempts,
        run.webhook_status_code,
        run.webhook_error,
    ) == ("delivered", 1, 200, None)
    assert set(outbound) == {"127.0.0.1"}
    # A duplicate delivery task sends nothing more.
    assert tasks.deliver_webhook.apply((str(run.run_id),)).get() is None
    assert len(receiver.requests) == 1


def test_a_failed_run_is_posted_with_its_error(settings, receiver, outbound, eager, monkeypatch):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.0/8"]
    monkeypatch.setattr("cronsvc.graphs.get_graph", lambda *a, **k: 1 / 0)
    run_here(thread_create(), kwargs={**QUESTION, "webhook": receiver.url})
    body = receiver.requests[0]["body"]
    assert body["status"] == "error"
    assert body["error"] == {
        "error": "ZeroDivisionError",
        "message": "ZeroDivisionError: division by zero",
    }


def test_a_pending_run_cancelled_is_posted_and_its_stateless_thread_goes(
    settings, receiver, outbound, eager, monkeypatch
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    doomed = []
    monkeypatch.setattr(
        "runs.wakeups.delete_stateless_thread",
        lambda thread_id, countdown, batched=False: doomed.append(thread_id),
    )
    agent = assistant_get_or_404("agent")
    later = timezone.now() + timedelta(hours=1)  # not claimable: no worker takes them
    interrupted, rolled_back = thread_create(), thread_create()
    run = run_create(
        thread=interrupted,
        assistant=agent,
        kwargs={**QUESTION, "webhook": receiver.url},
        on_completion="delete",
        scheduled_at=later,
    )
    gone = run_create(
        thread=rolled_back, assistant=agent, on_completion="delete", scheduled_at=later
    )

    run_cancel(run=run)
    run_cancel(run=gone, action="rollback")

    run.refresh_from_db()
    assert (run.status, run.cancel_action, run.webhook_status) == (
        "interrupted",
        "interrupt",
        "delivered",
    )
    assert [r["body"]["status"] for r in receiver.requests] == ["interrupted"]
    assert not Run.objects.filter(pk=gone.pk).exists()
    assert doomed == [str(interrupted.thread_id), str(rolled_back.thread_id)]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a cloud metadata address"),
        ("http://10.20.30.40:8080/hook", "10.20.30.40, a private address"),
        ("http://[fd00:ec2::254]/latest", "fd00:ec2::254, a cloud metadata address"),
        ("http://100.64.1.2/hook", "100.64.1.2, not a public address"),
        ("loopback", "127.0.0.1, a loopback address"),
        ("localhost", "a loopback address"),
    ],
)
def test_private_and_metadata_targets_are_refused_without_a_connection(
    settings, receiver, outbound, eager, url, reason
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["203.0.113.0/24", "hooks.example.com"]  # not these
    url = {"loopback": receiver.url, "localhost": f"http://localhost:{receiver.port}/hook"}.get(
        url, url
    )
    run = finished_run_with_webhook(url)
    assert receiver.requests == []
    assert outbound == []
    assert (run.webhook_status, run.webhook_attempts, run.webhook_status_code) == (
        "refused",
        1,
        None,
    )
    assert reason in run.webhook_error
    assert run.webhook_error.endswith("(admit it with CRONSVC_WEBHOOK_ALLOWLIST)")
    # Refusals are final: a redelivered task does not try again.
    assert tasks.deliver_webhook.apply((str(run.run_id),)).get() is None
    assert Run.objects.get(pk=run.pk).webhook_attempts == 1


def test_a_redirect_to_a_metadata_address_is_refused_at_that_hop(
    settings, receiver, outbound, eager
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    receiver.answers = [(307, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    run = finished_run_with_webhook(receiver.url)
    assert [r["path"] for r in receiver.requests] == ["/hook"]
    assert outbound == ["127.0.0.1"]
    assert run.webhook_status == "refused"
    assert "169.254.169.254, a cloud metadata address" in run.webhook_error


def test_a_redirect_within_the_allowlist_is_followed_with_the_body(
    settings, receiver, outbound, eager
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    receiver.answers = [(308, {"Location": "/moved"})]
    run = finished_run_with_webhook(receiver.url)
    assert [(r["method"], r["path"]) for r in receiver.requests] == [
        ("POST", "/hook"),
        ("POST", "/moved"),
    ]
    assert receiver.requests[1]["body"]["run_id"] == str(run.run_id)
    assert (run.webhook_status, run.webhook_status_code) == ("delivered", 200)


def test_a_webhook_failing_every_attempt_ends_failed(settings, receiver, outbound, eager):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    settings.CRONSVC_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.answers = [(503, {})] * 5
    run = finished_run_with_webhook(receiver.url)
    assert len(receiver.requests) == 3
    assert (
        run.webhook_status,
        run.webhook_attempts,
        run.webhook_status_code,
        run.webhook_error,
    ) == ("failed", 3, 503, "HTTP 503")


@pytest.mark.slow
def test_500_answers_are_retried_with_backoff_by_a_worker_then_delivered(
    settings, tmp_path, receiver, monkeypatch
):
    private = f"{QUEUE}-webhooks-{uuid.uuid4().hex[:6]}"
    monkeypatch.setattr("runs.wakeups.wake_thread", lambda thread_id: None)
    monkeypatch.setattr(
        "runs.wakeups.deliver_webhook",
        lambda run_id: tasks.deliver_webhook.apply_async((run_id,), queue=private),
    )
    receiver.answers = [(500, {}), (500, {}), (200, {})]
    worker = Proc(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cronsvc",
            "worker",
            "--pool=threads",
            "--concurrency=2",
            "-Q",
            private,
            "-n",
            f"hooks-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        subprocess_env(
            tmp_path, CRONSVC_WEBHOOK_ALLOWLIST="127.0.0.1", CRONSVC_WEBHOOK_BACKOFF="0.5"
        ),
        "webhook worker",
    )
    try:
        worker.wait_for("ready.", timeout=60)
        run = finished_run_with_webhook(receiver.url)
        wait_until(
            lambda: Run.objects.filter(pk=run.pk, webhook_status="delivered").exists(), timeout=30
        )
        run.refresh_from_db()
        assert (run.webhook_attempts, run.webhook_status_code, run.webhook_error) == (3, 200, None)
        assert len(receiver.requests) == 3
        assert {r["body"]["run_id"] for r in receiver.requests} == {str(run.run_id)}
        at = [r["at"] for r in receiver.requests]
        # Backoff: 0.5 s, then 1 s (the countdown doubles per attempt).
        assert at[1] - at[0] >= 0.45 and at[2] - at[1] >= 0.95, at
    finally:
        worker.stop()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(private)


def test_resolve_checks_every_address_a_name_resolves_to(settings, monkeypatch):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = []
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443)),
        ],
    )
    with pytest.raises(guard.Refused, match=re.escape("10.0.0.7, a private address")):
        transport.resolve("rebinding.example", 443)
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["rebinding.example"]
    assert str(transport.resolve("rebinding.example", 443)) == "93.184.215.14"


class RawReceiver:
    """An HTTP server on 127.0.0.1 whose POST handler is `answer(handler)`:
    it writes whatever it likes (a trickle, a huge body) to handler.wfile."""

    def __init__(self, answer):
        self.requests = 0
        self.sent: list[int] = []
        self.stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests += 1
                try:
                    answer(self, receiver)
                except OSError:
                    pass  # the client hung up: what the test wants

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def trickle_headers(handler, receiver):
    """A byte a second, forever (until the test ends): the status line never completes."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 600:
        if receiver.stop.wait(1):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


def trickle_body(handler, receiver):
    """Headers at once, then the body a byte a second."""
    handler.send_response(200)
    handler.send_header("Content-Length", "600")
    handler.end_headers()
    handler.wfile.flush()
    for _ in range(600):
        if receiver.stop.wait(1):
            return
        handler.wfile.write(b"x")
        handler.wfile.flush()


def huge_body(status: int, total: int):
    def answer(handler, receiver):
        handler.send_response(status)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk, sent = b"x" * (1 << 20), 0
        try:
            while sent < total and not receiver.stop.is_set():
                handler.wfile.write(chunk)
                sent += len(chunk)
        finally:
            receiver.sent.append(sent)

    return answer


@pytest.fixture
def raw_receivers():
    made: list[RawReceiver] = []

    def make(answer) -> RawReceiver:
        made.append(RawReceiver(answer))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.mark.parametrize("answer", [trickle_headers, trickle_body], ids=["headers", "body"])
def test_a_trickling_receiver_is_cut_off_at_the_attempt_deadline(
    settings, raw_receivers, outbound, eager, answer
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    settings.CRONSVC_WEBHOOK_TIMEOUT = 1.5
    settings.CRONSVC_WEBHOOK_MAX_ATTEMPTS = 2
    receiver = raw_receivers(answer)
    run = finished_run_with_webhook(receiver.url)
    assert receiver.requests == 2
    assert (run.webhook_status, run.webhook_attempts, run.webhook_status_code) == (
        "failed",
        2,
        None,
    )
    assert run.webhook_error == (
        "DeadlineExceeded: no complete answer within 1.5 s (CRONSVC_WEBHOOK_TIMEOUT)"
    )


def test_a_huge_answer_is_read_up_to_the_cap_and_discarded(
    settings, raw_receivers, outbound, eager
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    total = 64 << 20
    receiver = raw_receivers(huge_body(200, total))
    run = finished_run_with_webhook(receiver.url)
    assert (run.webhook_status, run.webhook_attempts, run.webhook_status_code) == (
        "delivered",
        1,
        200,
    )
    # The connection was closed after the cap: the receiver could not send it all.
    wait_until(lambda: receiver.sent, timeout=10)
    assert receiver.sent[0] < total


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_301_302_or_303_is_a_failure_not_followed(settings, receiver, outbound, eager, status):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    receiver.answers = [(status, {"Location": "/moved"})]
    run = finished_run_with_webhook(receiver.url)
    assert [(r["method"], r["path"]) for r in receiver.requests] == [("POST", "/hook")]
    assert (run.webhook_status, run.webhook_attempts, run.webhook_status_code) == (
        "failed",
        1,
        status,
    )
    assert run.webhook_error == (
        f"HTTP {status}: redirect to '/moved' not followed (only 307 and 308 re-send the POST)"
    )


def test_a_temporary_dns_failure_is_retried_not_refused(
    settings, receiver, outbound, eager, monkeypatch
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["hooks.test"]
    real, calls = socket.getaddrinfo, []

    def flaky(host, *args, **kwargs):
        if host != "hooks.test":
            return real(host, *args, **kwargs)
        calls.append(host)
        if len(calls) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", receiver.port))]

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    run = finished_run_with_webhook(f"http://hooks.test:{receiver.port}/hook")
    assert len(calls) == 2
    assert [r["headers"]["Host"] for r in receiver.requests] == [f"hooks.test:{receiver.port}"]
    assert (run.webhook_status, run.webhook_attempts, run.webhook_status_code) == (
        "delivered",
        2,
        200,
    )


def test_the_delivery_outcome_is_on_its_own_endpoint_and_the_admin_page(
    settings, receiver, outbound, eager, client, admin_client
):
    settings.CRONSVC_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
    settings.CRONSVC_WEBHOOK_MAX_ATTEMPTS = 2
    receiver.answers = [(503, {}), (503, {})]
    run = finished_run_with_webhook(receiver.url)
    base = f"/threads/{run.thread_id}/runs/{run.run_id}"

    outcome = client.get(f"{base}/webhook").json()
    assert outcome == {
        "run_id": str(run.run_id),
        "url": receiver.url,
        "status": "failed",
        "attempts": 2,
        "last_status_code": 503,
        "error": "HTTP 503",
        "last_attempt_at": run.webhook_sent_at.isoformat(),
    }
    # The run keeps the LangGraph Server's wire format: no webhook fields there.
    assert not any(k.startswith("webhook") for k in client.get(base).json())
    plain = run_here(thread_create(), kwargs=QUESTION)
    assert (
        client.get(f"/threads/{plain.thread_id}/runs/{plain.run_id}/webhook").json()["status"]
        is None
    )
    assert client.get(f"/threads/{run.thread_id}/runs/{uuid.uuid4()}/webhook").status_code == 404
    assert (
        "/threads/{thread_id}/runs/{run_id}/webhook" in client.get("/openapi.json").json()["paths"]
    )

    page = admin_client.get(f"/admin/runs/run/{run.pk}/change/").content.decode()
    for shown in ("Webhook", receiver.url, "Failed", "HTTP 503", "503"):
        assert shown in page
    assert admin_client.get("/admin/runs/run/?webhook_status__exact=failed").status_code == 200


def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` (VmRSS, KiB)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


# How much the delivering worker's resident memory may grow while a receiver
# answers 300 MiB: the body is read up to 64 KiB (transport.MAX_RESPONSE_BYTES).
RSS_GROWTH_BOUND_KIB = 50 * 1024


@pytest.mark.slow
def test_slow_and_huge_receivers_hold_no_run_slot_nor_memory(tmp_path, raw_receivers, monkeypatch):
    trickle = raw_receivers(trickle_headers)
    huge = raw_receivers(huge_body(500, 300 << 20))
    # A queue of the test's own, so only the two workers below take its messages.
    private = f"{QUEUE}-hooks-{uuid.uuid4().hex[:6]}"
    monkeypatch.setattr(app.conf, "task_default_queue", private)
    env = subprocess_env(
        tmp_path,
        CELERY_QUEUE=private,
        CRONSVC_WEBHOOK_ALLOWLIST="127.0.0.1",
        CRONSVC_WEBHOOK_TIMEOUT="3",
        CRONSVC_WEBHOOK_MAX_ATTEMPTS="2",
        CRONSVC_WEBHOOK_BACKOFF="5",
    )
    common = [
        "--pool=threads",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    base = [sys.executable, "-m", "celery", "-A", "cronsvc", "worker", *common]
    runs_worker = Proc(
        [*base, "--concurrency=2", "-Q", private, "-n", f"runs-{uuid.uuid4().hex[:6]}@%h"],
        env,
        "run worker",
    )
    hooks_worker = Proc(
        [*base, "--webhooks", "--concurrency=2", "-n", f"hooks-{uuid.uuid4().hex[:6]}@%h"],
        env,
        "webhook worker",
    )
    peak = [0]
    sampling = threading.Event()
    try:
        runs_worker.wait_for("ready.", timeout=60)
        hooks_worker.wait_for("ready.", timeout=60)
        pid = hooks_worker.popen.pid
        baseline = rss_kib(pid)

        def sample():
            while not sampling.wait(0.05):
                peak[0] = max(peak[0], rss_kib(pid))

        threading.Thread(target=sample, daemon=True).start()
        agent = assistant_get_or_404("agent")
        hooked = [
            run_create(
                thread=thread_create(), assistant=agent, kwargs={**QUESTION, "webhook": r.url}
            )
            for r in (trickle, huge)
        ]
        ids = [r.pk for r in hooked]
        # Both deliveries under way...
        wait_until(
            lambda: Run.objects.filter(pk__in=ids, webhook_attempts__gte=1).count() == 2, timeout=60
        )
        # ...while runs on other threads complete on the run slots.
        others = [
            run_create(thread=thread_create(), assistant=agent, kwargs=QUESTION) for _ in range(4)
        ]
        wait_until(
            lambda: (
                Run.objects.filter(pk__in=[r.pk for r in others], status="success").count() == 4
            ),
            timeout=60,
        )
        in_flight = dict(Run.objects.filter(pk__in=ids).values_list("pk", "webhook_status"))
        assert in_flight == {ids[0]: "pending", ids[1]: "pending"}

        wait_until(
            lambda: not Run.objects.filter(pk__in=ids, webhook_status="pending").exists(),
            timeout=90,
        )
        sampling.set()
        slow, big = (Run.objects.get(pk=pk) for pk in ids)
        assert (slow.webhook_status, slow.webhook_attempts, slow.webhook_status_code) == (
            "failed",
            2,
            None,
        )
        assert slow.webhook_error == (
            "DeadlineExceeded: no complete answer within 3 s (CRONSVC_WEBHOOK_TIMEOUT)"
        )
        assert (
            big.webhook_status,
            big.webhook_attempts,
            big.webhook_status_code,
            big.webhook_error,
        ) == ("failed", 2, 500, "HTTP 500")
        assert (trickle.requests, huge.requests) == (2, 2)
        growth = peak[0] - baseline
        print(
            f"webhook worker RSS: baseline {baseline} KiB, peak {peak[0]} KiB, "
            f"growth {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB); "
            f"the huge receiver got to send {sum(huge.sent) >> 10} KiB of 2 x 300 MiB"
        )
        assert growth < RSS_GROWTH_BOUND_KIB
        # Each worker took only its own queue's messages.
        assert "Task runs.deliver_webhook[" not in runs_worker.output()
        assert "Task runs.drain[" not in hooks_worker.output()
        assert hooks_worker.output().count("Task runs.deliver_webhook[") >= 4
    finally:
        sampling.set()
        hooks_worker.stop()
        runs_worker.stop()
        with app.connection_for_write() as conn:
            for queue in (private, f"{private}-webhooks"):
                conn.default_channel.queue_purge(queue)
