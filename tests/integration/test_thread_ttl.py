"""Thread TTLs (threads.ttl): set on create or update through the SDK, from
langgraph.json's default, renewed by a run, shown with `?include=ttl`, and
applied by the sweep (runs.sweep_ttl). No worker: the runs here stay pending."""

import json
from datetime import datetime, timedelta

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from langgraph_sdk.errors import UnprocessableEntityError

from crons.models import Cron
from runs import retention
from runs.models import Run
from threads import ttl as thread_ttl
from threads.checks import thread_ttl_config
from threads.models import Thread

pytestmark = pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)

HI = {"messages": [{"type": "human", "content": "hi"}]}


def expires_in(thread_id: str) -> float:
    """Minutes from now to the thread's expiry."""
    expires_at = Thread.objects.get(pk=thread_id).expires_at
    return (expires_at - timezone.now()).total_seconds() / 60


def expire(*thread_ids: str) -> None:
    Thread.objects.filter(pk__in=thread_ids).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_ttl_is_set_on_create_and_update_and_shown_when_asked(sdk, live_server):
    thread = sdk.threads.create(ttl=30)  # the SDK sends {"strategy": "delete", "ttl": 30}

    assert "ttl" not in sdk.threads.get(thread["thread_id"])
    shown = sdk.threads.get(thread["thread_id"], include=["ttl"])["ttl"]
    assert (shown["strategy"], shown["ttl_minutes"]) == ("delete", 30)
    expires_at = datetime.fromisoformat(shown["expires_at"])
    assert timedelta(minutes=29) < expires_at - timezone.now() <= timedelta(minutes=30)

    sdk.threads.update(thread["thread_id"], metadata={}, ttl={"strategy": "keep_latest", "ttl": 90})
    shown = sdk.threads.get(thread["thread_id"], include=["ttl"])["ttl"]
    assert (shown["strategy"], shown["ttl_minutes"]) == ("keep_latest", 90)
    assert 89 < expires_in(thread["thread_id"]) <= 90

    plain = sdk.threads.create()
    assert sdk.threads.get(plain["thread_id"], include=["ttl"])["ttl"] is None
    answer = httpx.get(f"{live_server.url}/threads/{plain['thread_id']}?include=ttl,other")
    assert answer.json()["ttl"] is None


@pytest.mark.parametrize(
    ("ttl", "field"),
    [
        ({"strategy": "forever", "ttl": 5}, "strategy"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"ttl": "5"}, "ttl"),
        ({"strategy": "delete"}, "ttl"),
        ({"ttl": thread_ttl.MAX_TTL_MINUTES + 1}, "ttl"),
    ],
)
def test_a_bad_ttl_is_422_and_writes_nothing(sdk, ttl, field):
    thread = sdk.threads.create()
    before = Thread.objects.count()

    with pytest.raises(UnprocessableEntityError) as created:
        sdk.threads.create(ttl=ttl)
    with pytest.raises(UnprocessableEntityError) as updated:
        sdk.threads.update(thread["thread_id"], metadata={"a": 1}, ttl=ttl)

    assert field in created.value.message and field in updated.value.message
    assert Thread.objects.count() == before
    assert Thread.objects.get(pk=thread["thread_id"]).metadata == {}


def test_a_run_renews_its_threads_ttl(sdk):
    thread = sdk.threads.create(ttl=10)
    expire(thread["thread_id"])

    sdk.runs.create(thread["thread_id"], "agent", input=HI)

    assert 9 < expires_in(thread["thread_id"]) <= 10


def test_the_sweep_deletes_prunes_renews_or_waits(sdk):
    gone = sdk.threads.create(ttl=5, graph_id="agent")["thread_id"]
    running = sdk.threads.create(ttl=5)["thread_id"]
    pruned = sdk.threads.create(ttl={"strategy": "keep_latest", "ttl": 5}, graph_id="agent")[
        "thread_id"
    ]
    scheduled = sdk.threads.create(ttl=5)["thread_id"]
    fresh = sdk.threads.create(ttl=5)["thread_id"]
    untimed = sdk.threads.create()["thread_id"]
    # Pending for an hour: a worker that another test started cannot take it.
    sdk.runs.create(running, "agent", input=HI, after_seconds=3600)
    for thread_id in (gone, pruned):
        sdk.threads.update_state(thread_id, HI, as_node="agent")
        sdk.threads.update_state(thread_id, HI, as_node="agent")
    assert len(sdk.threads.get_history(pruned, limit=10)) >= 2
    sdk.crons.create_for_thread(scheduled, "agent", schedule="0 0 1 1 *")
    expire(gone, running, pruned, scheduled)

    done = retention.sweep_expired_threads()

    assert done == {"deleted": 1, "pruned": 1, "renewed": 1}
    assert not Thread.objects.filter(pk=gone).exists()
    assert (
        sdk.threads.get_history(pruned, limit=10)[0]["values"]
        == sdk.threads.get_state(pruned)["values"]
    )
    assert len(sdk.threads.get_history(pruned, limit=10)) == 1
    assert Thread.objects.get(pk=pruned).expires_at is None  # until its next run
    assert 4 < expires_in(scheduled) <= 5 and Cron.objects.filter(thread_id=scheduled).exists()
    assert Thread.objects.get(pk=running).expires_at < timezone.now()  # waits for its run
    assert Run.objects.filter(thread_id=running).exists()
    assert 4 < expires_in(fresh) <= 5
    assert Thread.objects.get(pk=untimed).expires_at is None
    assert retention.sweep_expired_threads() == {"deleted": 0, "pruned": 0, "renewed": 0}


@pytest.fixture
def langgraph_json(tmp_path, settings):
    """A langgraph.json of this test's own (its graphs as the repo's)."""
    root = settings.LANGGRAPH_CONFIG.parent
    repo = json.loads(settings.LANGGRAPH_CONFIG.read_text())
    path = tmp_path / "langgraph.json"

    def write(ttl) -> None:
        graphs = {k: str(root / v.lstrip("./")) for k, v in repo["graphs"].items()}
        path.write_text(json.dumps({**repo, "graphs": graphs, "checkpointer": {"ttl": ttl}}))
        settings.LANGGRAPH_CONFIG = path
        thread_ttl.config.cache_clear()

    yield write
    thread_ttl.config.cache_clear()


def test_langgraph_json_gives_the_default_ttl(sdk, langgraph_json):
    langgraph_json({"strategy": "keep_latest", "default_ttl": 60, "sweep_interval_minutes": 5})

    thread = sdk.threads.create()
    own = sdk.threads.create(ttl=5)

    assert sdk.threads.get(thread["thread_id"], include=["ttl"])["ttl"]["strategy"] == "keep_latest"
    assert 59 < expires_in(thread["thread_id"]) <= 60
    assert 4 < expires_in(own["thread_id"]) <= 5
    assert thread_ttl_config(None) == []


@pytest.mark.parametrize(
    "ttl",
    [{"strategy": "forever"}, {"default_ttl": -5}, {"default_ttl": "1h"}, {"ttl": 5}, []],
)
def test_a_bad_checkpointer_ttl_fails_the_checks(langgraph_json, ttl):
    langgraph_json(ttl)

    with pytest.raises(ImproperlyConfigured, match=r"checkpointer\.ttl"):
        thread_ttl.config()
    [error] = thread_ttl_config(None)
    assert error.id == "cronsvc.E101"
