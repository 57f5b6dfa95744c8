"""The assistants endpoints, through the official langgraph_sdk client."""

import uuid

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from cronsvc.models import Assistant
from threads.models import Thread

# available_apps: flush only these apps' tables between tests, which keeps the suite fast.
pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

AGENT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))
FIELDS = {
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
}


def test_create_returns_every_field_and_get_returns_the_same(sdk):
    assistant_id = str(uuid.uuid4())

    created = sdk.assistants.create(
        "agent",
        config={"tags": ["a"], "recursion_limit": 7},
        context={"model": "m1"},
        metadata={"team": "x", "n": 1},
        assistant_id=assistant_id,
        name="Clock",
        description="Tells the time",
    )

    assert set(created) == FIELDS
    assert created["assistant_id"] == assistant_id
    assert created["graph_id"] == "agent"
    # context is mirrored into config.configurable
    assert created["config"] == {
        "tags": ["a"],
        "recursion_limit": 7,
        "configurable": {"model": "m1"},
    }
    assert created["context"] == {"model": "m1"}
    assert created["metadata"] == {"team": "x", "n": 1}
    assert created["name"] == "Clock"
    assert created["description"] == "Tells the time"
    assert created["version"] == 1
    assert (
        created["created_at"] == created["updated_at"]
        or created["created_at"] < created["updated_at"]
    )
    assert sdk.assistants.get(assistant_id) == created


def test_create_defaults(sdk):
    created = sdk.assistants.create("agent")

    uuid.UUID(created["assistant_id"])
    assert {k: created[k] for k in FIELDS - {"assistant_id", "created_at", "updated_at"}} == {
        "graph_id": "agent",
        "name": "Untitled",
        "description": None,
        "config": {},
        "context": {},
        "metadata": {},
        "version": 1,
    }


def test_default_assistant_of_a_graph_has_the_servers_uuid5_id(sdk):
    assistant = sdk.assistants.get(AGENT_ID)

    assert assistant["graph_id"] == "agent"
    assert assistant["name"] == "agent"
    assert assistant["metadata"] == {"created_by": "system"}
    assert assistant["config"] == {}
    assert assistant["version"] == 1


def test_create_if_exists_raise_conflicts_and_do_nothing_returns_the_existing_one(sdk):
    first = sdk.assistants.create("agent", assistant_id=str(uuid.uuid4()), name="first")
    before = Assistant.objects.count()

    with pytest.raises(ConflictError) as exc:
        sdk.assistants.create("agent", assistant_id=first["assistant_id"], name="second")
    same = sdk.assistants.create(
        "agent", assistant_id=first["assistant_id"], name="second", if_exists="do_nothing"
    )

    assert exc.value.status_code == 409
    assert exc.value.message == f"Assistant {first['assistant_id']} already exists"
    assert same == first
    assert Assistant.objects.count() == before


def test_create_with_unknown_graph_is_404_and_writes_nothing(sdk):
    before = Assistant.objects.count()

    with pytest.raises(NotFoundError) as exc:
        sdk.assistants.create("nope")

    assert (
        exc.value.message
        == "Graph 'nope' not found. Expected one of: ['agent', 'slow', 'memory', 'flaky']"
    )
    assert Assistant.objects.count() == before


def test_configurable_and_context_mirror_each_other(sdk):
    from_config = sdk.assistants.create("agent", config={"configurable": {"model": "a"}})
    from_context = sdk.assistants.create("agent", context={"model": "b"})

    assert from_config["context"] == {"model": "a"}
    assert from_context["config"] == {"configurable": {"model": "b"}}


def test_both_configurable_and_context_is_400_and_writes_nothing(sdk):
    from langgraph_sdk.errors import BadRequestError

    before = Assistant.objects.count()

    with pytest.raises(BadRequestError) as exc:
        sdk.assistants.create("agent", config={"configurable": {"a": 1}}, context={"b": 2})

    assert exc.value.message.startswith("Cannot specify both configurable and context.")
    assert Assistant.objects.count() == before


def test_patch_merges_metadata_keeps_omitted_fields_and_bumps_version(sdk):
    created = sdk.assistants.create(
        "agent", metadata={"a": 1, "b": 1}, name="old", description="d", config={"tags": ["t"]}
    )

    patched = sdk.assistants.update(created["assistant_id"], metadata={"b": 2, "c": 3}, name="new")

    assert patched["metadata"] == {"a": 1, "b": 2, "c": 3}
    assert patched["name"] == "new"
    assert patched["description"] == "d"
    assert patched["config"] == {"tags": ["t"]}
    assert patched["version"] == 2
    assert patched["created_at"] == created["created_at"]
    assert patched["updated_at"] > created["updated_at"]
    assert sdk.assistants.get(created["assistant_id"]) == patched


def test_empty_patch_still_makes_a_new_version(sdk):
    created = sdk.assistants.create("agent")

    patched = sdk.assistants.update(created["assistant_id"])

    assert patched["version"] == 2
    assert patched["metadata"] == {}


def test_patch_with_unknown_graph_is_404_and_changes_nothing(sdk):
    created = sdk.assistants.create("agent")

    with pytest.raises(NotFoundError):
        sdk.assistants.update(created["assistant_id"], graph_id="nope")

    assert sdk.assistants.get(created["assistant_id"]) == created


def test_delete_is_204_then_404(sdk, live_server):
    created = sdk.assistants.create("agent")

    response = httpx.delete(f"{live_server.url}/assistants/{created['assistant_id']}")

    assert response.status_code == 204
    assert response.content == b""
    with pytest.raises(NotFoundError) as exc:
        sdk.assistants.get(created["assistant_id"])
    assert exc.value.message == f"Assistant '{created['assistant_id']}' not found"
    with pytest.raises(NotFoundError):
        sdk.assistants.delete(created["assistant_id"])


def test_delete_with_delete_threads_removes_the_assistants_threads(sdk):
    assistant = sdk.assistants.create("agent")
    mine = sdk.threads.create(metadata={"assistant_id": assistant["assistant_id"]})
    other = sdk.threads.create(metadata={"assistant_id": AGENT_ID})

    sdk.assistants.delete(assistant["assistant_id"], delete_threads=True)

    assert list(Thread.objects.values_list("thread_id", flat=True)) == [
        uuid.UUID(other["thread_id"])
    ]
    assert mine["thread_id"] != other["thread_id"]


def test_search_filters_by_metadata_graph_id_and_name(sdk):
    a = sdk.assistants.create("agent", name="Morning Clock", metadata={"team": "a", "tier": 1})
    b = sdk.assistants.create("agent", name="Evening clock", metadata={"team": "a", "tier": 2})
    sdk.assistants.create("agent", name="Other", metadata={"team": "b"})

    by_metadata = sdk.assistants.search(metadata={"team": "a"})
    by_nested = sdk.assistants.search(metadata={"team": "a", "tier": 2})
    by_name = sdk.assistants.search(name="CLOCK")
    by_graph = sdk.assistants.search(graph_id="agent", limit=100)

    assert [x["assistant_id"] for x in by_metadata] == [b["assistant_id"], a["assistant_id"]]
    assert [x["assistant_id"] for x in by_nested] == [b["assistant_id"]]
    assert [x["assistant_id"] for x in by_name] == [b["assistant_id"], a["assistant_id"]]
    assert len(by_graph) == 4  # three created and the system assistant
    assert sdk.assistants.count(metadata={"team": "a"}) == 2
    assert sdk.assistants.count(name="clock") == 2
    assert sdk.assistants.count(graph_id="agent") == 4
    assert sdk.assistants.count() == 7  # and the system assistants of 'slow', 'memory', 'flaky'


def test_search_and_count_with_unknown_graph_are_404(sdk):
    with pytest.raises(NotFoundError):
        sdk.assistants.search(graph_id="nope")
    with pytest.raises(NotFoundError):
        sdk.assistants.count(graph_id="nope")


def test_search_paginates_and_sorts(sdk):
    names = ["c", "a", "d", "b"]
    for name in names:
        sdk.assistants.create("agent", name=name, metadata={"page": True})

    asc = sdk.assistants.search(metadata={"page": True}, sort_by="name", sort_order="asc")
    desc = sdk.assistants.search(metadata={"page": True}, sort_by="name", sort_order="desc")
    page1 = sdk.assistants.search(
        metadata={"page": True}, sort_by="name", sort_order="asc", limit=3, offset=0
    )
    page2 = sdk.assistants.search(
        metadata={"page": True}, sort_by="name", sort_order="asc", limit=3, offset=3
    )
    newest_first = sdk.assistants.search(metadata={"page": True})

    assert [x["name"] for x in asc] == ["a", "b", "c", "d"]
    assert [x["name"] for x in desc] == ["d", "c", "b", "a"]
    assert [x["name"] for x in page1] == ["a", "b", "c"]
    assert [x["name"] for x in page2] == ["d"]
    assert [x["name"] for x in newest_first] == ["b", "d", "a", "c"]


def test_search_select_returns_only_the_selected_fields(sdk):
    created = sdk.assistants.create("agent", name="sel", metadata={"sel": 1})

    found = sdk.assistants.search(metadata={"sel": 1}, select=["assistant_id", "name"])

    assert found == [{"assistant_id": created["assistant_id"], "name": "sel"}]


def test_search_pagination_headers(sdk, live_server):
    for _ in range(3):
        sdk.assistants.create("agent", metadata={"h": 1})
    url = f"{live_server.url}/assistants/search"

    first = httpx.post(url, json={"metadata": {"h": 1}, "limit": 2})
    last = httpx.post(url, json={"metadata": {"h": 1}, "limit": 2, "offset": 2})
    as_object = sdk.assistants.search(metadata={"h": 1}, limit=2, response_format="object")

    assert first.status_code == 200
    assert len(first.json()) == 2
    assert first.headers["X-Pagination-Next"] == "2"
    assert first.headers["X-Pagination-Total"] == "3"
    assert len(last.json()) == 1
    assert "X-Pagination-Next" not in last.headers
    assert last.headers["X-Pagination-Total"] == "3"
    assert as_object["next"] == "2"
    assert len(as_object["assistants"]) == 2


def test_count_is_a_bare_integer(sdk, live_server):
    sdk.assistants.create("agent", metadata={"k": "v"})

    response = httpx.post(f"{live_server.url}/assistants/count", json={"metadata": {"k": "v"}})

    assert response.status_code == 200
    assert response.content == b"1"


def test_graph_by_graph_name_and_by_uuid(sdk):
    created = sdk.assistants.create("agent")

    by_name = sdk.assistants.get_graph("agent")
    by_uuid = sdk.assistants.get_graph(created["assistant_id"])
    with_xray = sdk.assistants.get_graph("agent", xray=True)

    assert by_name == by_uuid == with_xray
    assert [n["id"] for n in by_name["nodes"]] == ["__start__", "agent", "__end__"]
    assert [(e["source"], e["target"]) for e in by_name["edges"]] == [
        ("__start__", "agent"),
        ("agent", "__end__"),
    ]
    assert all("id" not in n.get("data", {}) for n in by_name["nodes"])


@pytest.mark.parametrize("xray", ["abc", "0", "-1"])
def test_graph_with_invalid_xray_is_422(sdk, xray):
    with pytest.raises(UnprocessableEntityError) as exc:
        sdk.assistants.get_graph("agent", params={"xray": xray})

    assert exc.value.message == "Invalid xray value"


def test_schemas(sdk):
    schemas = sdk.assistants.get_schemas(AGENT_ID)

    assert set(schemas) == {
        "graph_id",
        "input_schema",
        "output_schema",
        "state_schema",
        "config_schema",
        "context_schema",
    }
    assert schemas["graph_id"] == "agent"
    assert list(schemas["input_schema"]["properties"]) == ["messages"]
    assert list(schemas["output_schema"]["properties"]) == ["messages"]
    assert list(schemas["state_schema"]["properties"]) == ["messages"]


def test_graph_name_is_not_an_id_outside_the_graph_endpoint(sdk):
    with pytest.raises(UnprocessableEntityError) as exc:
        sdk.assistants.get("agent")

    assert exc.value.message == "Invalid assistant ID: must be a UUID"


@pytest.mark.parametrize("path", ["schemas", "graph"])
def test_assistant_whose_graph_was_removed_is_a_json_404(sdk, path):
    # An assistant row whose graph is no longer declared in langgraph.json.
    assistant = Assistant.objects.create(graph_id="removed_graph")

    get = sdk.assistants.get_schemas if path == "schemas" else sdk.assistants.get_graph
    with pytest.raises(NotFoundError) as exc:
        get(str(assistant.assistant_id))

    assert exc.value.response.headers["content-type"] == "application/json"
    assert exc.value.message.startswith("Graph 'removed_graph' not found in langgraph.json.")
