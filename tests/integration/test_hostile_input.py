"""Requests an attacker or an unlucky client sends: each a clear 4xx with a
`detail`, nothing written, and the server as usable after as before."""

import json

import pytest

from cronsvc.services import assistants_ensure_defaults

pytestmark = pytest.mark.django_db


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def thread_with_two_messages(client):
    assistants_ensure_defaults()
    thread_id = post(client, "/threads", {"metadata": {"graph_id": "agent"}}).json()["thread_id"]
    for i in (1, 2):
        message = {"type": "human", "content": f"hi {i}", "id": f"m{i}"}
        response = post(
            client,
            f"/threads/{thread_id}/state",
            {"values": {"messages": [message]}, "as_node": "agent"},
        )
        assert response.status_code == 200, response.content
    return thread_id


def messages(client, thread_id) -> list:
    return client.get(f"/threads/{thread_id}/state").json()["values"]["messages"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (
            {
                "values": {"messages": [{"type": "human", "content": "x"}]},
                "checkpoint_id": "does-not-exist",
            },
            404,
            "Checkpoint does-not-exist not found",
        ),
        (
            {
                "values": {"messages": []},
                "checkpoint": {"checkpoint_id": "1ef00000-0000-6000-8000-000000000000"},
            },
            404,
            "not found for thread",
        ),
        ({"values": {"messages": 5}, "as_node": "agent"}, 422, "Invalid state update"),
    ],
    ids=["unknown-checkpoint-id", "unknown-checkpoint", "values-that-do-not-fit"],
)
def test_a_state_update_that_cannot_apply_changes_nothing(
    client, thread_with_two_messages, body, status, detail
):
    thread_id = thread_with_two_messages
    response = post(client, f"/threads/{thread_id}/state", body)
    assert response.status_code == status, response.content
    assert detail in response.json()["detail"]
    assert [m["content"] for m in messages(client, thread_id)] == ["hi 1", "hi 2"]
    assert len(post(client, f"/threads/{thread_id}/history", {"limit": 10}).json()) == 2


@pytest.mark.parametrize("key", ["a b", "a.b", "x')--", ""])
def test_a_history_filter_key_outside_the_safe_set_is_422(client, thread_with_two_messages, key):
    thread_id = thread_with_two_messages
    response = post(client, f"/threads/{thread_id}/history", {"metadata": {key: 1}})
    assert response.status_code == 422
    assert "Invalid metadata filter keys" in response.json()["detail"]
    ok = post(client, f"/threads/{thread_id}/history", {"metadata": {"source": "update"}})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/runs/crons/search",
        "/runs/crons/count",
        "/threads/search",
        "/threads/count",
        "/assistants/search",
        "/assistants/count",
    ],
)
@pytest.mark.parametrize(
    ("metadata", "status"),
    [
        ({"k__regex": "^(a+)+$"}, 200),
        ({"k__contains": "a", "k__isnull": True, "k__gt": 1}, 200),
        ({"k": {"$regex": "x"}}, 422),
        ({"$or": [{"a": 1}]}, 422),
        ({"k": "a\\u0000"}, 200),
    ],
    ids=["regex-key", "lookup-keys", "unknown-operator", "short-or", "escaped-nul-text"],
)
def test_metadata_filter_keys_are_json_keys_never_lookups(client, path, metadata, status):
    assistants_ensure_defaults()
    response = post(client, path, {"metadata": metadata})
    assert response.status_code == status, response.content
    if status == 200:
        assert response.json() in ([], 0)
    else:
        assert response.json()["detail"]


def test_a_cron_whose_end_time_has_passed_is_refused_and_nothing_is_written(client):
    from crons.models import Cron

    assistants_ensure_defaults()
    body = {"assistant_id": "agent", "schedule": "* * * * *", "end_time": "2020-01-01T00:00:00Z"}
    response = post(client, "/runs/crons", body)
    assert response.status_code == 422
    assert "has already passed" in response.json()["detail"]
    assert Cron.objects.count() == 0
    assert post(client, "/runs/crons/search", {}).json() == []


@pytest.mark.parametrize(
    "schedule",
    ["1-0 * * * *", "*/99999999999999999999 * * * *", "", " ", "x" * 300],
)
def test_a_schedule_that_means_nothing_is_refused(client, schedule):
    assistants_ensure_defaults()
    response = post(client, "/runs/crons", {"assistant_id": "agent", "schedule": schedule})
    assert response.status_code == 422, response.content
    assert response.json()["detail"]
    assert post(client, "/runs/crons/count", {}).json() == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/runs/crons", {"assistant_id": "agent", "schedule": "* * * * *", "stream_mode": [{}]}),
        ("/runs/crons", {"assistant_id": "agent", "schedule": "* * * * *", "stream_mode": [1]}),
        ("/runs/crons", {"assistant_id": "agent", "schedule": "* " * 200}),
        ("/runs/crons", {"assistant_id": "agent", "schedule": "* * * * *", "timezone": "A" * 65}),
        ("/runs/crons/search", {"offset": 2**63}),
        ("/runs/crons/search", {"offset": 2**31}),
        ("/assistants", {"graph_id": "agent", "name": "n" * 256}),
        ("/assistants", {"graph_id": "g" * 256}),
        ("/runs/wait", {"assistant_id": "agent", "stream_mode": [{}]}),
        ("/runs", {"assistant_id": "agent", "stream_mode": [["values"]]}),
    ],
    ids=[
        "stream-mode-object",
        "stream-mode-number",
        "long-schedule",
        "long-timezone",
        "offset-2^63",
        "offset-2^31",
        "long-assistant-name",
        "long-graph-id",
        "wait-stream-mode-object",
        "run-stream-mode-list",
    ],
)
def test_values_a_column_cannot_hold_are_a_422_and_nothing_is_written(client, path, body):
    from crons.models import Cron
    from cronsvc.models import Assistant
    from runs.models import Run

    assistants_ensure_defaults()
    counts = (Cron.objects.count(), Assistant.objects.count(), Run.objects.count())
    response = post(client, path, body)
    assert response.status_code == 422, response.content
    assert response.json()["detail"]
    assert (Cron.objects.count(), Assistant.objects.count(), Run.objects.count()) == counts
    assert post(client, "/runs/crons/search", {}).status_code == 200
