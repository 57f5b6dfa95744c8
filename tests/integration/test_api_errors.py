"""Client mistakes on the assistants, threads and runs endpoints: the status the
LangGraph Server gives, a `detail` the SDK shows, and nothing written."""

import uuid

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import (
    APIStatusError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)

from cronsvc.models import Assistant
from runs.models import Run
from threads.models import Thread

# available_apps: flush only these apps' tables between tests, which keeps the suite fast.
pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def thread_id(sdk):
    return sdk.threads.create()["thread_id"]


@pytest.fixture
def api(live_server):
    with httpx.Client(base_url=live_server.url) as client:
        yield client


def rows():
    return Assistant.objects.count(), Thread.objects.count(), Run.objects.count()


UNKNOWN_IDS = [
    (lambda sdk, t: sdk.assistants.get(MISSING), f"Assistant '{MISSING}' not found"),
    (lambda sdk, t: sdk.assistants.update(MISSING, name="x"), f"Assistant '{MISSING}' not found"),
    (lambda sdk, t: sdk.assistants.delete(MISSING), f"Assistant '{MISSING}' not found"),
    (lambda sdk, t: sdk.assistants.get_graph(MISSING), f"Assistant '{MISSING}' not found"),
    (lambda sdk, t: sdk.assistants.get_schemas(MISSING), f"Assistant '{MISSING}' not found"),
    (lambda sdk, t: sdk.threads.get(MISSING), f"Thread with ID {MISSING} not found"),
    (
        lambda sdk, t: sdk.threads.update(MISSING, metadata={"a": 1}),
        f"Thread with ID {MISSING} not found",
    ),
    (lambda sdk, t: sdk.threads.delete(MISSING), f"Thread with ID {MISSING} not found"),
    (lambda sdk, t: sdk.threads.get_state(MISSING), f"Thread with ID {MISSING} not found"),
    (lambda sdk, t: sdk.threads.update_state(MISSING, {}), f"Thread with ID {MISSING} not found"),
    (lambda sdk, t: sdk.threads.get_history(MISSING), f"Thread with ID {MISSING} not found"),
    (lambda sdk, t: sdk.runs.list(MISSING), f"Thread with ID {MISSING} not found"),
    (lambda sdk, t: sdk.runs.create(MISSING, "agent"), "Thread or assistant not found."),
    (lambda sdk, t: sdk.runs.get(t, MISSING), f"Run '{MISSING}' not found"),
    (lambda sdk, t: sdk.runs.delete(t, MISSING), f"Run '{MISSING}' not found"),
    (lambda sdk, t: sdk.runs.cancel(t, MISSING), f"Run '{MISSING}' not found"),
]


def test_unknown_ids_are_404_with_the_detail_as_the_sdk_message(sdk, thread_id):
    before = rows()

    for call, message in UNKNOWN_IDS:
        with pytest.raises(NotFoundError) as exc:
            call(sdk, thread_id)
        assert (exc.value.status_code, exc.value.message) == (404, message)
        assert exc.value.body == {"detail": message}

    assert rows() == before


def test_join_and_wait_on_unknown_ids_raise_http_status_errors(sdk, thread_id):
    before = rows()

    with pytest.raises(httpx.HTTPStatusError) as join:
        sdk.runs.join(thread_id, MISSING)
    with pytest.raises(httpx.HTTPStatusError) as wait:
        sdk.runs.wait(MISSING, "agent")

    assert join.value.response.status_code == 404
    assert wait.value.response.status_code == 404
    assert wait.value.response.json() == {"detail": "Thread or assistant not found."}
    assert rows() == before


NON_UUID_PATHS = [
    ("GET", "/assistants/abc", "Invalid assistant ID: must be a UUID"),
    ("PATCH", "/assistants/abc", "Invalid assistant ID: must be a UUID"),
    ("DELETE", "/assistants/abc", "Invalid assistant ID: must be a UUID"),
    ("GET", "/assistants/abc/schemas", "Invalid assistant ID: must be a UUID"),
    ("GET", "/assistants/abc/graph", "Invalid assistant ID: must be a UUID"),
    ("GET", "/threads/abc", "Invalid thread ID: must be a UUID"),
    ("PATCH", "/threads/abc", "Invalid thread ID: must be a UUID"),
    ("DELETE", "/threads/abc", "Invalid thread ID: must be a UUID"),
    ("GET", "/threads/abc/state", "Invalid thread ID: must be a UUID"),
    ("POST", "/threads/abc/state", "Invalid thread ID: must be a UUID"),
    ("GET", f"/threads/abc/state/{MISSING}", "Invalid thread ID: must be a UUID"),
    ("POST", "/threads/abc/history", "Invalid thread ID: must be a UUID"),
    ("GET", "/threads/abc/history", "Invalid thread ID: must be a UUID"),
    ("GET", "/threads/abc/runs", "Invalid thread ID: must be a UUID"),
    ("POST", "/threads/abc/runs", "Invalid thread ID: must be a UUID"),
    ("POST", "/threads/abc/runs/wait", "Invalid thread ID: must be a UUID"),
    ("GET", f"/threads/abc/runs/{MISSING}", "Invalid thread ID: must be a UUID"),
    ("GET", f"/threads/{MISSING}/runs/abc", "Invalid run ID: must be a UUID"),
    ("DELETE", f"/threads/{MISSING}/runs/abc", "Invalid run ID: must be a UUID"),
    ("GET", f"/threads/{MISSING}/runs/abc/join", "Invalid run ID: must be a UUID"),
    ("POST", f"/threads/{MISSING}/runs/abc/cancel", "Invalid run ID: must be a UUID"),
]


def test_non_uuid_path_ids_are_422(api):
    before = rows()

    for method, path, message in NON_UUID_PATHS:
        body = {"assistant_id": "agent"} if method in ("POST", "PATCH") else None
        response = api.request(method, path, json=body)
        assert (method, path, response.status_code, response.json()) == (
            method,
            path,
            422,
            {"detail": message},
        )

    assert rows() == before


AGENT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))


MALFORMED_JSON_PATHS = [
    ("POST", "/assistants"),
    ("POST", "/assistants/search"),
    ("POST", "/assistants/count"),
    ("PATCH", f"/assistants/{AGENT_ID}"),
    ("POST", "/threads"),
    ("POST", "/threads/search"),
    ("POST", "/threads/count"),
    ("PATCH", "/threads/{t}"),
    ("POST", "/threads/{t}/state"),
    ("POST", "/threads/{t}/history"),
    ("POST", "/runs"),
    ("POST", "/runs/wait"),
    ("POST", "/threads/{t}/runs"),
    ("POST", "/threads/{t}/runs/wait"),
]


def test_malformed_json_is_422(api, thread_id):
    before = rows()

    for method, path in MALFORMED_JSON_PATHS:
        response = api.request(
            method,
            path.format(t=thread_id),
            content=b'{"graph_id": "agent",',
            headers={"Content-Type": "application/json"},
        )
        assert (path, response.status_code) == (path, 422)
        assert response.json()["detail"].startswith("Invalid JSON in request body")

    assert rows() == before


def test_a_body_that_is_not_an_object_is_422(api):
    before = rows()

    for path in ["/assistants", "/threads", "/runs", "/threads/search"]:
        response = api.post(path, json=["agent"])
        assert (path, response.status_code) == (path, 422)
        assert response.json() == {"detail": "Request body must be a JSON object"}

    assert rows() == before


WRONG_TYPES = [
    (lambda sdk, t: sdk.assistants.create("agent", metadata=["a"]), "metadata"),
    (lambda sdk, t: sdk.assistants.create("agent", config="x"), "config"),
    (lambda sdk, t: sdk.assistants.create("agent", assistant_id="abc"), "assistant_id"),
    (lambda sdk, t: sdk.assistants.create("agent", if_exists="update"), "if_exists"),
    (lambda sdk, t: sdk.assistants.search(limit="abc"), "limit"),
    (lambda sdk, t: sdk.assistants.search(limit=0), "limit"),
    (lambda sdk, t: sdk.assistants.search(offset=-1), "offset"),
    (lambda sdk, t: sdk.assistants.search(sort_by="version"), "sort_by"),
    (lambda sdk, t: sdk.assistants.search(select=["nope"]), "select"),
    (lambda sdk, t: sdk.assistants.count(metadata="x"), "metadata"),
    (lambda sdk, t: sdk.threads.create(thread_id="abc"), "thread_id"),
    (lambda sdk, t: sdk.threads.update(t, metadata=3), "metadata"),
    (lambda sdk, t: sdk.threads.search(limit="abc"), "limit"),
    (lambda sdk, t: sdk.threads.search(status="sleeping"), "status"),
    (lambda sdk, t: sdk.threads.search(ids=["abc"]), "ids"),
    (lambda sdk, t: sdk.threads.search(select=["context"]), "select"),
    (lambda sdk, t: sdk.threads.count(values=[1]), "values"),
    (lambda sdk, t: sdk.threads.get_history(t, limit="abc"), "limit"),
    (lambda sdk, t: sdk.runs.create(t, "agent", metadata=["a"]), "metadata"),
    (lambda sdk, t: sdk.runs.create(t, "agent", multitask_strategy="later"), "multitask_strategy"),
    (lambda sdk, t: sdk.runs.create(t, "agent", stream_mode="tools"), "stream_mode"),
    (lambda sdk, t: sdk.runs.create(t, "agent", if_not_exists="maybe"), "if_not_exists"),
    (lambda sdk, t: sdk.runs.create(None, "agent", config=[]), "config"),
    (lambda sdk, t: sdk.runs.list(t, limit="abc"), "limit"),
    (lambda sdk, t: sdk.runs.list(t, offset="abc"), "offset"),
    # A boolean is JSON true or false, not 0, 1 or "yes" (as the document says).
    (lambda sdk, t: sdk.runs.create(t, "agent", stream_subgraphs=1), "stream_subgraphs"),
    (lambda sdk, t: sdk.crons.search(enabled=1), "enabled"),
    (lambda sdk, t: sdk.crons.search(enabled="yes"), "enabled"),
    (lambda sdk, t: sdk.store.search_items(["a"], refresh_ttl=0), "refresh_ttl"),
]


def test_wrong_field_types_are_422_naming_the_field(sdk, thread_id):
    before = rows()

    for call, field in WRONG_TYPES:
        with pytest.raises(UnprocessableEntityError) as exc:
            call(sdk, thread_id)
        assert field in exc.value.message

    assert rows() == before


def test_wrong_query_types_are_422(api, thread_id):
    history = api.get(f"/threads/{thread_id}/history", params={"limit": "abc"})
    runs = api.get(f"/threads/{thread_id}/runs", params={"limit": "abc"})

    assert history.status_code == 422
    assert history.json() == {"detail": "Invalid limit abc"}
    assert runs.status_code == 422
    assert runs.json() == {"detail": "Invalid limit abc"}


def test_both_configurable_and_context_on_a_run_is_400(sdk, thread_id):
    from langgraph_sdk.errors import BadRequestError

    before = rows()

    with pytest.raises(BadRequestError) as exc:
        sdk.runs.create(thread_id, "agent", config={"configurable": {"a": 1}}, context={"b": 2})

    assert exc.value.message.startswith("Cannot specify both configurable and context.")
    assert rows() == before


def test_an_oversized_body_is_413(api, settings, thread_id):
    settings.CRONSVC_MAX_BODY_BYTES = 1000
    before = rows()
    body = {"graph_id": "agent", "assistant_id": "agent", "metadata": {"pad": "x" * 2000}}

    for method, path in [
        ("POST", "/assistants"),
        ("POST", "/threads"),
        ("POST", "/runs"),
        ("POST", "/threads/{t}/runs"),
        ("PATCH", "/threads/{t}"),
    ]:
        response = api.request(method, path.format(t=thread_id), json=body)
        length = int(response.request.headers["Content-Length"])
        assert (path, response.status_code, response.json()) == (
            path,
            413,
            {"detail": f"Request body is {length} bytes; the limit is 1000 bytes."},
        )

    assert rows() == before


def test_oversized_body_through_the_sdk(sdk, settings):
    settings.CRONSVC_MAX_BODY_BYTES = 1000
    before = rows()

    with pytest.raises(APIStatusError) as exc:
        sdk.threads.create(metadata={"pad": "x" * 2000})

    assert exc.value.status_code == 413
    assert exc.value.message.endswith("the limit is 1000 bytes.")
    assert rows() == before


def test_api_keys_are_checked_when_configured(live_server, settings):
    settings.CRONSVC_API_KEYS = ["k1", "k2"]
    before = rows()
    anonymous = get_sync_client(url=live_server.url, api_key=None)
    wrong = get_sync_client(url=live_server.url, api_key="nope")
    right = get_sync_client(url=live_server.url, api_key="k2")

    with pytest.raises(PermissionDeniedError) as missing_key:
        anonymous.threads.create()
    with pytest.raises(PermissionDeniedError) as wrong_key:
        wrong.assistants.create("agent")
    with pytest.raises(PermissionDeniedError):
        wrong.runs.create(None, "agent")
    assert rows() == before

    thread = right.threads.create()
    assert right.threads.get(thread["thread_id"]) == thread
    assert missing_key.value.message == "Missing or invalid API key (x-api-key header)."
    assert wrong_key.value.message == "Missing or invalid API key (x-api-key header)."
    assert httpx.get(f"{live_server.url}/ok").json() == {
        "ok": True,
        "services": {"database": "skipped"},
    }
    assert httpx.get(f"{live_server.url}/ok?check_db=1").json()["services"] == {
        "database": "healthy"
    }


GARBAGE = [
    ("POST", "/assistants", {"graph_id": None}),
    ("POST", "/assistants", {"graph_id": 5}),
    ("POST", "/assistants", {"graph_id": "agent", "name": ["x"]}),
    ("POST", "/assistants", {"graph_id": "agent", "metadata": {"a": "\u0000"}}),
    ("POST", "/assistants/search", {"metadata": {"a": {"b": [1, {"c": None}]}}}),
    ("POST", "/assistants/search", {"sort_order": "sideways"}),
    ("POST", "/assistants/search", {"limit": 10**20}),
    ("POST", "/threads", {"thread_id": 5}),
    ("POST", "/threads", {"ttl": "soon"}),
    ("POST", "/threads", {"metadata": {"a": "\u0000"}}),
    ("POST", "/threads/search", {"ids": "abc"}),
    ("POST", "/threads/search", {"values": {"x": {"y": 1}}, "offset": 10**20}),
    ("POST", "/threads/{t}/state", {"values": {"messages": 5}, "as_node": 5}),
    ("POST", "/threads/{t}/state", {"checkpoint": "abc"}),
    ("POST", "/threads/{t}/history", {"before": "abc"}),
    ("POST", "/threads/{t}/history", {"limit": 0}),
    ("GET", "/threads/{t}/history?limit=-5", None),
    ("GET", "/threads/{t}/runs?limit=-5&offset=-1", None),
    ("GET", "/threads/{t}/state/not-a-checkpoint", None),
    ("POST", "/threads/{t}/runs", {}),
    ("POST", "/threads/{t}/runs", {"assistant_id": None}),
    ("POST", "/threads/{t}/runs", {"assistant_id": 5}),
    ("POST", "/threads/{t}/runs", {"assistant_id": "agent", "command": "go"}),
    ("POST", "/threads/{t}/runs", {"assistant_id": "agent", "interrupt_before": "agent"}),
    ("POST", "/threads/{t}/runs", {"assistant_id": "agent", "checkpoint": "x"}),
    ("POST", "/threads/{t}/runs", {"assistant_id": "agent", "after_seconds": "soon"}),
    ("POST", "/threads/{t}/runs", {"assistant_id": "agent", "metadata": {"a": "\u0000"}}),
    ("POST", "/runs", {"assistant_id": "agent", "on_completion": "never"}),
    ("POST", "/runs/wait", {"assistant_id": "nope"}),
    ("GET", "/assistants/agent/graph?xray=9999999999999999999999", None),
    ("PUT", "/threads/{t}", {}),
    ("GET", "/nope", None),
]


def test_no_client_mistake_is_a_server_error_nor_a_write(api, thread_id):
    before = rows()

    for method, path, body in GARBAGE:
        response = api.request(method, path.format(t=thread_id), json=body)
        assert response.status_code < 500, (method, path, body, response.text)
        assert rows() == before, (method, path, body, response.text)


def test_ok_skips_the_database_unless_asked_and_reports_it_down(client, monkeypatch):
    from django.db import OperationalError

    from cronsvc import apis

    class Down:
        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(apis, "connection", Down())
    assert client.get("/ok").json() == {"ok": True, "services": {"database": "skipped"}}
    response = client.get("/ok?check_db=1")
    assert response.status_code == 500
    assert response.json() == {"ok": False, "services": {"database": "unhealthy"}}
    assert client.get("/ok?check_db=maybe").status_code == 422
    # 0 or 1, as the document says (the LangGraph Server's is an integer too).
    assert client.get("/ok?check_db=true").status_code == 422
    assert client.get("/ok?check_db=0").json()["services"] == {"database": "skipped"}
