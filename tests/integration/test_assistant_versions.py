"""Assistant versions through the official SDK: each create and update makes a
version, `set_latest` brings one back, restarts add none; and subgraphs."""

import pytest
from django.core.management import call_command
from langgraph_sdk.errors import NotFoundError, UnprocessableEntityError

from cronsvc.models import AssistantVersion
from cronsvc.services import assistants_ensure_defaults

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_create_and_update_is_a_version(sdk):
    created = sdk.assistants.create("agent", name="v1", metadata={"stage": "draft"})
    aid = created["assistant_id"]
    sdk.assistants.update(aid, name="v2", metadata={"stage": "review"})
    third = sdk.assistants.update(aid, config={"configurable": {"x": 3}}, name="v3")
    assert third["version"] == 3

    versions = sdk.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["name"] for v in versions] == ["v3", "v2", "v1"]
    assert versions[2]["metadata"] == {"stage": "draft"}
    assert set(versions[0]) >= {"assistant_id", "graph_id", "config", "context", "created_at"}
    assert [v["version"] for v in sdk.assistants.get_versions(aid, limit=1, offset=1)] == [2]
    assert [
        v["version"] for v in sdk.assistants.get_versions(aid, metadata={"stage": "draft"})
    ] == [1]

    back = sdk.assistants.set_latest(aid, 1)
    assert (back["version"], back["name"], back["metadata"]) == (1, "v1", {"stage": "draft"})
    assert sdk.assistants.get(aid)["name"] == "v1"
    assert len(sdk.assistants.get_versions(aid)) == 3  # set_latest adds none

    # The next update follows the newest version, not the current one.
    assert sdk.assistants.update(aid, name="v4")["version"] == 4


def test_set_latest_to_a_missing_version_is_404_and_changes_nothing(sdk):
    aid = sdk.assistants.create("agent", name="only")["assistant_id"]
    with pytest.raises(NotFoundError):
        sdk.assistants.set_latest(aid, 7)
    with pytest.raises(UnprocessableEntityError):
        sdk.assistants.set_latest(aid, 0)
    assert sdk.assistants.get(aid)["version"] == 1


def test_default_assistants_get_one_version_however_often_the_service_starts(sdk):
    assistants_ensure_defaults()
    call_command("migrate", verbosity=0)
    assistants_ensure_defaults()
    (default,) = sdk.assistants.search(graph_id="agent", metadata={"created_by": "system"})
    versions = sdk.assistants.get_versions(default["assistant_id"])
    assert [v["version"] for v in versions] == [1]
    assert AssistantVersion.objects.filter(assistant_id=default["assistant_id"]).count() == 1


def test_subgraphs_of_a_graph_without_any(sdk):
    aid = sdk.assistants.create("agent")["assistant_id"]
    assert sdk.assistants.get_subgraphs(aid) == {}
    assert sdk.assistants.get_subgraphs(aid, namespace="nothing", recurse=True) == {}
    with pytest.raises(NotFoundError):
        sdk.assistants.get_subgraphs("00000000-0000-0000-0000-000000000000")
