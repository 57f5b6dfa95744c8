"""Fuzzing the HTTP API with schemathesis (issue 11, "What it must show" 1).

Two documents drive it:

* The official LangGraph Server `openapi.json`, read from the pinned `langgraph-api`
  wheel, which is downloaded (`pip download --no-deps`, checked against its sha256)
  into a cache on first use; it is never committed and never a dependency. Its
  schemas are looser than the server in places (it allows what cronsvc refuses
  with a 4xx), so against it we only check that nothing answers 5xx and that
  every 4xx is JSON with a top-level `detail`. Every operation it documents that
  cronsvc routes is fuzzed, on PostgreSQL (pytest-django's live server) and on the
  embedded default (`manage.py dev` on SQLite, a subprocess).
* cronsvc's own `/openapi.json`, with the response-conformance checks as well (on
  PostgreSQL, with an API key configured, since the document declares `x-api-key`).

Budget: `CRONSVC_FUZZ_EXAMPLES` generated examples per operation (default 5, which
keeps this file around two minutes on two cores; a long run uses e.g. 200), plus
schemathesis' explicit-example and coverage (boundary values) phases. The seed is
fixed (`CRONSVC_FUZZ_SEED`, default 11) and generation derandomized, so a run is
reproducible. `CRONSVC_FUZZ_SHRINK=1` shrinks a failing example to a minimal one
(slower). `CRONSVC_FUZZ_SURVEY=1` does not stop an operation at its first failure:
every failing request is collected and listed when the test ends
(`CRONSVC_FUZZ_REPORT=<file>` also writes them as JSON lines).

    scripts/test.sh tests/e2e/test_fuzz.py                            # short, as in .ci/run
    CRONSVC_FUZZ_EXAMPLES=200 scripts/test.sh tests/e2e/test_fuzz.py  # long

No worker and no beat run: runs stay pending. Waits, joins and streams block
until the run ends, so the servers under test get CRONSVC_WAIT_TIMEOUT=0.05
and every one of them answers within a fraction of a second (the stream operations are
fuzzed, not skipped); the HTTP client has a timeout too, so nothing can hang.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation

from tests.conftest import QUEUE, ROOT, Proc

pytestmark = pytest.mark.slow

LANGGRAPH_API = "langgraph-api==0.16.7"
LANGGRAPH_API_SHA256 = "3c1dcddd1b0e4f345386d7075beaa88e3fb0fe7fc898e9816085dbf44012827e"
CACHE = Path(
    os.environ.get("CRONSVC_TEST_CACHE") or Path.home() / ".cache" / "cronsvc-tests"
).expanduser()

EXAMPLES = int(os.environ.get("CRONSVC_FUZZ_EXAMPLES", "5"))
SEED = int(os.environ.get("CRONSVC_FUZZ_SEED", "11"))
SHRINK = os.environ.get("CRONSVC_FUZZ_SHRINK") == "1"
SURVEY = os.environ.get("CRONSVC_FUZZ_SURVEY") == "1"
REPORT = os.environ.get("CRONSVC_FUZZ_REPORT")
# Longest a wait, join or stream holds a request on the servers under test (seconds).
WAIT_TIMEOUT = "0.05"
API_KEY = "fuzz-api-key"
METHODS = ("get", "put", "post", "patch", "delete")


# --- the documents -------------------------------------------------------------------


def _wheel() -> Path:
    name = LANGGRAPH_API.replace("-", "_").replace("==", "-") + "-py3-none-any.whl"
    wheel = CACHE / name
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
                *("--disable-pip-version-check", "-q", LANGGRAPH_API, "-d", str(CACHE)),
            ],
            check=True,
            timeout=300,
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != LANGGRAPH_API_SHA256:
        wheel.unlink()
        raise AssertionError(f"{wheel.name}: sha256 {digest}, expected {LANGGRAPH_API_SHA256}")
    return wheel


@pytest.fixture(scope="session")
def official_openapi() -> dict:
    """The LangGraph Server's own document, from the wheel of the pinned version."""
    with zipfile.ZipFile(_wheel()) as wheel:
        return json.loads(wheel.read("openapi.json"))


def served_operations() -> set[tuple[str, str]]:
    """(path template, method) of every API operation cronsvc routes, from its URLconf."""
    from django.urls import URLPattern, URLResolver, get_resolver

    served: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "view_class", None)
                if view is None:
                    continue
                path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
                served.update((path, m) for m in METHODS if hasattr(view, m))

    walk(get_resolver().url_patterns, "")
    return served


def only_served(document: dict) -> tuple[dict, list[str]]:
    """The document with only the operations cronsvc serves; and the ones left out
    (A2A, the protocol v2 commands and event stream: not implemented)."""
    served = served_operations()
    kept, skipped = {}, []
    for path, item in document["paths"].items():
        ops = {k: v for k, v in item.items() if k not in METHODS or (path, k) in served}
        skipped += [f"{m.upper()} {path}" for m in item if m in METHODS and m not in ops]
        if any(m in ops for m in METHODS):
            kept[path] = ops
    return {**document, "paths": kept}, skipped


def config(base_url: str, headers: dict | None = None) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": base_url,
            **({"headers": headers} if headers else {}),
            "request-timeout": 20,
            "suppress-health-check": ["all"],
            # The reproductions must be exact: no "[Filtered]" for keys that look secret.
            "output": {"sanitization": {"enabled": False}},
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": not SHRINK,
            },
        }
    )


# --- the servers under test ----------------------------------------------------------


def _top_frame(text: str) -> str:
    """The innermost frame of cronsvc's own code in a traceback, and the exception."""
    frames = [
        f"{Path(path).relative_to(ROOT)}:{line} in {func}"
        for path, line, func in re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)
        if path.startswith(str(ROOT)) and "/.venv/" not in path and "site-packages" not in path
    ]
    errors = re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)+(\S.*)", text)
    return " | ".join(filter(None, [frames[-1] if frames else "", errors[-1] if errors else ""]))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


class Target:
    """A server under test: its URL, the ids of objects made in it, its error log."""

    def __init__(self, name: str, url: str, proc: Proc | None = None):
        self.name, self.url, self.proc = name, url, proc
        self.ids: dict[str, str] = {}
        self.failures: list[dict] = []
        self.calls: dict[str, list[float]] = {}  # operation: [requests, seconds]
        self.checks: list = []  # for cronsvc's own document (see _own_checks)
        self.handler: _Collect | None = None
        if proc is None:
            self.handler = _Collect()
            logging.getLogger("django.request").addHandler(self.handler)

    def close(self) -> None:
        if self.handler is not None:
            logging.getLogger("django.request").removeHandler(self.handler)

    def mark(self) -> int:
        return len(self.handler.texts if self.handler else self.proc.lines)

    def log_since(self, mark: int) -> str:
        if self.handler is not None:
            return "\n".join(self.handler.texts[mark:])
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # the child's output arrives through a pipe
            text = "".join(self.proc.lines[mark:])
            if "Traceback" in text and re.search(r"\n[\w.]+(Error|Exception)", text):
                break
            time.sleep(0.05)
        return "".join(self.proc.lines[mark:])

    def seed(self) -> None:
        """An assistant, a thread with two checkpoints, a run and a cron to aim at."""
        with httpx.Client(base_url=self.url, timeout=30) as http:

            def post(path: str, body: dict) -> dict:
                response = http.post(path, json=body)
                assert response.status_code == 200, (path, response.status_code, response.text)
                return response.json()

            self.ids["assistant_id"] = post("/assistants", {"graph_id": "agent"})["assistant_id"]
            thread = post("/threads", {"metadata": {"graph_id": "agent", "k": "v"}})["thread_id"]
            self.ids["thread_id"] = thread
            for text in ("hello", "again"):
                message = {"role": "user", "content": text}
                post(f"/threads/{thread}/state", {"values": {"messages": [message]}})
            self.ids["checkpoint_id"] = http.get(f"/threads/{thread}/state").json()["checkpoint"][
                "checkpoint_id"
            ]
            run = post(f"/threads/{thread}/runs", {"assistant_id": "agent"})["run_id"]
            self.ids["run_id"] = run
            # Cancelled, so the thread is idle and the next run on it can start.
            http.post(f"/threads/{thread}/runs/{run}/cancel")
            self.ids["cron_id"] = post(
                "/runs/crons", {"assistant_id": "agent", "schedule": "0 3 * * *"}
            )["cron_id"]


def _aim(case, target: Target) -> set[ParameterLocation]:
    """Two in three cases get ids of objects that exist, so the fuzz reaches past the
    404 (the third keeps the generated ids: malformed and unknown ones). DELETE keeps
    its generated ids: deleting the objects would leave nothing to aim at. Some of them
    also get edge values (below). Returns where a generated value was replaced by a
    valid one."""

    # Decided by the whole generated request, so it is the same when an example is replayed.
    draw = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    replaced: set[ParameterLocation] = set()
    if draw % 3 == 0:
        return replaced
    if case.method.upper() != "DELETE":
        for name in list(case.path_parameters or {}):
            if name in target.ids:
                case.path_parameters[name] = target.ids[name]
                replaced.add(ParameterLocation.PATH)
    if isinstance(case.body, dict) and "assistant_id" in case.body:
        case.body["assistant_id"] = "agent"
        replaced.add(ParameterLocation.BODY)
    # One in five pushes one top-level number or string to the edge that broke the server
    # before (schemathesis rarely sends them unasked): 2**63, past any int64 column or
    # OFFSET; 300 more characters, past a 255-character column. One field at a time, or
    # the first one checked (a limit) would hide the others (an offset).
    if draw % 5 == 1:
        fields = [
            (params, key)
            for params in (case.body, case.query)
            if isinstance(params, dict)
            for key, value in params.items()
            if isinstance(value, (int, str))
            and not isinstance(value, bool)
            and key != "assistant_id"
        ]
        if fields:
            params, key = fields[(draw // 5) % len(fields)]
            value = params[key]
            params[key] = 2**63 if isinstance(value, int) else value + "x" * 300
    return replaced


def error_is_json_with_detail(ctx, response, case) -> None:
    """Every 4xx is JSON with a top-level `detail`, as the LangGraph Server answers
    (not /docs: the Swagger UI page is HTML, like the reference server's)."""
    if 400 <= response.status_code < 500 and case.operation.path != "/docs":
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not (isinstance(body, dict) and "detail" in body):
            raise AssertionError(
                f"{response.status_code} without a JSON `detail`: {response.content[:300]!r}"
            )


def fuzz_one(case, target: Target, checks: list) -> None:
    replaced = _aim(case, target)
    if replaced and case.meta is not None and case.meta.generation.mode.is_negative:
        # The invalid part schemathesis generated may be what _aim replaced with a real
        # id or "agent": the request may be valid now, and a 2xx right. (The third of
        # the cases _aim leaves alone are still checked.)
        checks = [c for c in checks if c.__name__ != "negative_data_rejection"]
    mark = target.mark()
    started = time.monotonic()
    response = case.call()
    calls = target.calls.setdefault(f"{case.method.upper()} {case.operation.path}", [0, 0.0])
    calls[0] += 1
    calls[1] += time.monotonic() - started
    content_type = response.headers.get("content-type") or [""]
    if str(content_type[0] if isinstance(content_type, list) else content_type).startswith(
        "text/event-stream"
    ):
        # The document gives an event stream's body as a string (what it is); schemathesis
        # would check each event's `data` (a JSON value per stream mode) against that.
        # ignored_auth re-sends the request without the key: on a stream endpoint it
        # intermittently reported the first (keyed) stream's 200 as the keyless answer
        # since more operations were added (2026-11-30, not explained); the keyless
        # answer of every stream endpoint is checked directly instead
        # (test_stream_endpoints_refuse_a_request_without_the_key).
        skipped = ("response_schema_conformance", "ignored_auth")
        checks = [c for c in checks if c.__name__ not in skipped]
    try:
        case.validate_response(response, checks=checks)
    except (AssertionError, FailureGroup) as exc:
        failure = {
            "target": target.name,
            "operation": f"{case.method.upper()} {case.operation.path}",
            "status": response.status_code,
            "checks": sorted(
                {getattr(e, "title", str(e)) for e in getattr(exc, "exceptions", [exc])}
            ),
            "curl": case.as_curl_command(),
            "response": response.content[:300].decode(errors="replace"),
            "frame": _top_frame(target.log_since(mark)) if response.status_code >= 500 else "",
        }
        target.failures.append(failure)
        if failure["frame"]:
            exc.add_note(f"Server traceback: {failure['frame']}")
        if not SURVEY:
            raise


def finish(target: Target) -> None:
    total = sum(n for n, _ in target.calls.values())
    print(f"\n{target.name}: {total} requests")
    for operation, (n, seconds) in sorted(target.calls.items(), key=lambda kv: -kv[1][1]):
        print(f"  {n:5d} {seconds:7.1f}s  {operation}")
    if REPORT:
        with open(REPORT, "a") as out:
            for failure in target.failures:
                out.write(json.dumps(failure) + "\n")
    if SURVEY and target.failures:
        seen: dict[tuple, dict] = {}
        for f in target.failures:
            seen.setdefault((f["operation"], f["status"], f["frame"], *f["checks"]), f)
        lines = [
            f"{f['operation']} -> {f['status']} {f['checks']} [{f['frame']}]\n    {f['curl']}"
            for f in seen.values()
        ]
        pytest.fail(
            f"{len(target.failures)} failing requests on {target.name}:\n" + "\n".join(lines)
        )


@pytest.fixture
def postgresql(live_server, settings, monkeypatch):
    """pytest-django's live server on the test database (PostgreSQL)."""
    from cronsvc.celery import app
    from cronsvc.services import assistants_ensure_defaults

    settings.CRONSVC_WAIT_TIMEOUT = float(WAIT_TIMEOUT)
    # Wake-ups of the runs made here go to a queue no worker reads, purged afterwards.
    parked = f"{QUEUE}-fuzz"
    monkeypatch.setattr(app.conf, "task_default_queue", parked)
    assistants_ensure_defaults()
    target = Target("postgresql", live_server.url)
    target.seed()
    yield target
    target.close()
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(parked)
    finish(target)


@pytest.fixture
def embedded(tmp_path):
    """`manage.py dev` on the embedded default: SQLite in a fresh data folder, the
    filesystem broker; no worker, no beat."""
    from tests.e2e.test_embedded import free_port

    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE")
    }
    env.update(
        {
            "CRONSVC_DATA_DIR": str(tmp_path / "data"),
            "CRONSVC_WAIT_TIMEOUT": WAIT_TIMEOUT,
            "PYTHONUNBUFFERED": "1",
        }
    )
    argv = [sys.executable, "manage.py", "dev", "--port", str(port), "--no-worker", "--no-beat"]
    proc = Proc(argv, env, "manage.py dev")
    target = Target("embedded", f"http://127.0.0.1:{port}", proc)
    try:
        proc.wait_for("cronsvc API on", timeout=90)
        target.seed()
        yield target
    finally:
        proc.stop(signal.SIGTERM, timeout=30)
    finish(target)


@pytest.fixture
def official_on_postgresql(official_openapi, postgresql):
    document, _ = only_served(official_openapi)
    return schemathesis.openapi.from_dict(document, config=config(postgresql.url))


@pytest.fixture
def official_on_embedded(official_openapi, embedded):
    document, _ = only_served(official_openapi)
    return schemathesis.openapi.from_dict(document, config=config(embedded.url))


@pytest.fixture
def own_on_postgresql(postgresql, settings):
    """cronsvc's document declares the x-api-key header; the server requires it here
    (after seeding), so missing_required_header and ignored_auth can hold."""
    settings.CRONSVC_API_KEYS = [API_KEY]
    headers = {"x-api-key": API_KEY}
    schema = schemathesis.openapi.from_url(
        f"{postgresql.url}/openapi.json", config=config(postgresql.url, headers), headers=headers
    )
    postgresql.checks = _own_checks(skeleton=_is_skeleton(schema.raw_schema))
    return schema


def _is_skeleton(document: dict) -> bool:
    """The document as it was before it was made complete: no request bodies, no errors."""
    operations = [
        op for item in document["paths"].values() for m, op in item.items() if m in METHODS
    ]
    return not any("requestBody" in op for op in operations) and all(
        str(code).startswith("2") for op in operations for code in op.get("responses", {})
    )


# --- the tests -----------------------------------------------------------------------

NO_5XX = [not_a_server_error, error_is_json_with_detail]


# No available_apps: it would take drf_spectacular's templates away from /docs.
@pytest.mark.django_db(transaction=True)
@schemathesis.pytest.from_fixture("official_on_postgresql").parametrize()
def test_official_schema_no_5xx_on_postgresql(case, postgresql):
    fuzz_one(case, postgresql, NO_5XX)


@schemathesis.pytest.from_fixture("official_on_embedded").parametrize()
def test_official_schema_no_5xx_on_embedded(case, embedded):
    fuzz_one(case, embedded, NO_5XX)


def no_server_error(ctx, response, case) -> None:
    """not_a_server_error, but /health may say 503: it reports the workers and beat,
    and none run here."""
    if case.operation.path == "/health" and response.status_code == 503:
        return
    not_a_server_error(ctx, response, case)


def _own_checks(*, skeleton: bool) -> list:
    """Every check that can hold for one request at a time, minus:
    positive_data_acceptance: data valid for the document is still refused for what it
      means (an unknown id is a 404, a schedule with no future instant a 422, a busy
      thread a 409), which a JSON schema cannot say;
    use_after_free, ensure_resource_availability: stateful (sequences of calls);
    max_response_time: no timing claims.
    On the skeleton document (no bodies, only 2xx statuses: cronsvc's before it
    was completed) status_code_conformance cannot hold, every 4xx is undocumented; it is
    left out then, with a warning, and comes back by itself with the complete document.
    (An xfail mark is no way out: pytest 8's summary crashes on xfailed subtests.)"""
    from schemathesis.specs.openapi import checks as oas

    if skeleton:
        warnings.warn(
            "cronsvc's /openapi.json documents no bodies and no error statuses: "
            "status_code_conformance is left out until it does",
            stacklevel=2,
        )
    return [
        no_server_error,
        error_is_json_with_detail,
        *([] if skeleton else [oas.status_code_conformance]),
        oas.content_type_conformance,
        oas.response_headers_conformance,
        oas.response_schema_conformance,
        oas.missing_required_header,
        oas.ignored_auth,
        oas.unsupported_method,
        oas.negative_data_rejection,
    ]


@pytest.mark.django_db(transaction=True)
@schemathesis.pytest.from_fixture("own_on_postgresql").parametrize()
def test_own_schema_conforms_on_postgresql(case, postgresql):
    fuzz_one(case, postgresql, postgresql.checks)


def test_the_official_document_is_filtered_to_what_cronsvc_serves(official_openapi):
    """The operations left out are the ones cronsvc does not implement; nothing it
    serves is missing from the fuzz (a new route shows up here)."""
    document, skipped = only_served(official_openapi)
    kept = {
        f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item if m in METHODS
    }
    assert "POST /runs/crons" in kept
    assert "POST /threads/{thread_id}/history" in kept
    assert not any(
        s.startswith(("POST /runs/crons ", "GET /threads/{thread_id}/state")) for s in skipped
    )
    print(f"fuzzed {len(kept)} operations:", *sorted(kept), sep="\n  ")
    print("not served:", *sorted(skipped), sep="\n  ")


@pytest.mark.django_db(transaction=True)
def test_stream_endpoints_refuse_a_request_without_the_key(postgresql, settings):
    """What ignored_auth would check on the event-stream endpoints (left out above)."""
    settings.CRONSVC_API_KEYS = [API_KEY]
    keyed = {"x-api-key": API_KEY}
    thread = httpx.post(f"{postgresql.url}/threads", json={}, headers=keyed).json()["thread_id"]
    run = httpx.post(
        f"{postgresql.url}/threads/{thread}/runs", json={"assistant_id": "agent"}, headers=keyed
    ).json()["run_id"]
    with httpx.Client(base_url=postgresql.url, timeout=10) as client:
        for method, path in [
            ("GET", f"/runs/{run}/stream"),
            ("GET", f"/threads/{thread}/runs/{run}/stream"),
            ("GET", f"/threads/{thread}/stream"),
            ("POST", f"/threads/{thread}/runs/stream"),
            ("POST", "/runs/stream"),
        ]:
            for headers in ({}, {"x-api-key": "not-the-key"}):
                answer = client.request(
                    method,
                    path,
                    headers=headers,
                    json={"assistant_id": "agent"} if method == "POST" else None,
                )
                assert answer.status_code == 403, (method, path, headers, answer.text)
