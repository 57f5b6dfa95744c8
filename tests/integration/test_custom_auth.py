"""LangGraph custom auth (langgraph.json's `auth`): who calls, what they see,
and crons that fire as their owner.

Two bearer-token users, ada and bob, through langgraph_sdk with headers
against the live server. The auth object (tests/auth_recipes.py) is switched
on with the CRONSVC_AUTH setting (what langgraph.json's `auth.path` would
load); loading from langgraph.json itself is tested on its own. The owner
isolation also runs on the embedded SQLite default: `manage.py dev` started
with a langgraph.json whose auth names the same recipe.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import textwrap
import uuid

import httpx
import pytest
from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import path
from langgraph_sdk import Auth, get_sync_client
from rest_framework.response import Response

from crons import dispatch, ticking
from crons.models import Cron, Tick
from cronsvc import custom_auth
from cronsvc import urls as root_urls
from cronsvc.models import Assistant
from runs.executor import build_config
from runs.models import Run
from tests.auth_recipes import (
    VARIANTS,
    authenticate_with_tokens,
    owner_auth,
)
from tests.conftest import ROOT, Proc
from tests.factories import free_port
from threads.models import Thread
from threads.selectors import thread_search

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}


def client(url: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return get_sync_client(url=url, api_key=None, headers=headers)


@pytest.fixture
def users(live_server, settings):
    def use(auth: Auth):
        settings.CRONSVC_AUTH = auth
        return client(live_server.url, "token-ada"), client(live_server.url, "token-bob")

    return use


def http(server, method: str, path: str, token: str | None = "token-bob", **kw):  # noqa: S107
    """A request to `server` (the live server, or a base URL) as bob by default."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{server}{path}", headers=headers, timeout=10, **kw)


def status_of(call) -> int:
    try:
        call()
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


def assert_isolated(ada, bob, server, variant: str) -> dict[str, str]:
    """ada's assistant, thread, run and crons are hers: bob gets 404 on get,
    update and delete, finds none of it in search and count, cannot put a run
    or a cron on her thread, and changes nothing; the default assistants work
    for both. Through the API only (either database). Returns ada's ids."""
    assistant = ada.assistants.create("agent", name="ada's", metadata={"kind": "mine"})
    thread = ada.threads.create(metadata={"topic": "x"})
    tid, aid = thread["thread_id"], assistant["assistant_id"]
    run = ada.runs.create(tid, "agent", input=QUESTION)
    cron = ada.crons.create_for_thread(tid, "agent", schedule="0 9 * * *")
    stateless = ada.crons.create("agent", schedule="0 10 * * *")

    # ada sees what is hers.
    assert ada.assistants.get(aid)["name"] == "ada's"
    assert ada.threads.get(tid)["thread_id"] == tid
    assert ada.runs.get(tid, run["run_id"])["run_id"] == run["run_id"]
    assert {c["cron_id"] for c in ada.crons.search()} == {cron["cron_id"], stateless["cron_id"]}
    assert ada.crons.count() == 2
    assert ada.threads.count() == 1
    assert cron["user_id"] == "ada"

    # bob gets 404 on get, update and delete, of every resource.
    for call in (
        lambda: bob.assistants.get(aid),
        lambda: bob.assistants.update(aid, metadata={"owner": "bob"}),
        lambda: bob.assistants.delete(aid),
        lambda: bob.threads.get(tid),
        lambda: bob.threads.update(tid, metadata={"owner": "bob"}),
        lambda: bob.threads.delete(tid),
        lambda: bob.threads.get_state(tid),
        lambda: bob.runs.get(tid, run["run_id"]),
        lambda: bob.runs.list(tid),
        lambda: bob.runs.delete(tid, run["run_id"]),
        lambda: bob.runs.cancel(tid, run["run_id"]),
        lambda: bob.crons.update(cron["cron_id"], schedule="0 1 * * *"),
        lambda: bob.crons.update(stateless["cron_id"], schedule="0 1 * * *"),
        lambda: bob.crons.delete(cron["cron_id"]),
        lambda: bob.crons.delete(stateless["cron_id"]),
    ):
        assert status_of(call) == 404, variant
    for cron_id in (cron["cron_id"], stateless["cron_id"]):
        assert http(server, "GET", f"/runs/crons/{cron_id}").status_code == 404
    assert http(server, "GET", f"/runs/{run['run_id']}/stream").status_code == 404
    assert http(server, "GET", f"/threads/{tid}/stream").status_code == 404

    # ... a run or a cron on ada's thread is refused.
    assert status_of(lambda: bob.runs.create(tid, "agent", input=QUESTION)) == 404
    assert status_of(lambda: bob.runs.wait(tid, "agent", input=QUESTION)) == 404
    assert status_of(lambda: bob.crons.create_for_thread(tid, "agent", schedule="* * * * *")) in (
        403,
        404,
    )

    # ... and finds none of it.
    assert aid not in {a["assistant_id"] for a in bob.assistants.search(limit=100)}
    assert bob.threads.search() == []
    assert bob.threads.count() == 0
    assert bob.crons.search() == []
    assert bob.crons.count() == 0
    assert bob.crons.search(thread_id=tid) == []

    # The default assistants work for both.
    own = bob.threads.create()
    bob_run = bob.runs.create(own["thread_id"], "agent", input=QUESTION)
    assert bob_run["assistant_id"] == "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
    assert bob.assistants.get("fe096781-5601-53d2-b2f6-0d3403f7e9ca")["graph_id"] == "agent"
    bob_cron = bob.crons.create("agent", schedule="0 8 * * *")
    assert bob_cron["user_id"] == "bob"
    assert bob.crons.count() == 1
    assert ada.crons.count() == 2
    assert {t["thread_id"] for t in bob.threads.search()} == {own["thread_id"]}
    assert status_of(lambda: ada.runs.get(own["thread_id"], bob_run["run_id"])) == 404

    # Nothing of ada's changed, as she sees it.
    assert ada.threads.get(tid)["metadata"].get("owner") != "bob"
    assert ada.assistants.get(aid)["metadata"].get("owner") != "bob"
    schedules = {c["cron_id"]: c["schedule"] for c in ada.crons.search()}
    assert schedules == {cron["cron_id"]: "0 9 * * *", stateless["cron_id"]: "0 10 * * *"}
    assert ada.runs.get(tid, run["run_id"])["run_id"] == run["run_id"]
    return {
        "thread": tid,
        "assistant": aid,
        "run": run["run_id"],
        "cron": cron["cron_id"],
        "stateless": stateless["cron_id"],
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_other_users_resources_are_invisible(users, live_server, variant):
    ada, bob = users(VARIANTS[variant]())
    ids = assert_isolated(ada, bob, live_server, variant)

    # Nothing of ada's changed in the database.
    assert Thread.objects.get(pk=ids["thread"]).metadata.get("owner") != "bob"
    assert Cron.objects.get(pk=ids["cron"]).schedule == "0 9 * * *"
    assert Cron.objects.filter(pk=ids["stateless"]).exists()
    assert Assistant.objects.filter(pk=ids["assistant"]).exists()
    assert Run.objects.filter(pk=ids["run"]).exists()


# ------------------------------------------------------------------ on the embedded SQLite default


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory):
    """`manage.py dev` on the embedded default (SQLite in a fresh data folder,
    the filesystem broker; no worker, no beat), its auth loaded from
    langgraph.json: start(variant) serves with that recipe of
    tests/auth_recipes.py, one server per variant, and gives its URL."""
    servers: dict[str, tuple[Proc, str]] = {}

    def start(variant: str) -> str:
        if variant in servers:
            return servers[variant][1]
        folder = tmp_path_factory.mktemp(f"embedded-{variant}")
        (folder / "auth.py").write_text(
            f"from tests.auth_recipes import VARIANTS\n\nauth = VARIANTS[{variant!r}]()\n"
        )
        (folder / "langgraph.json").write_text(
            json.dumps(
                {
                    "graphs": {"agent": str(ROOT / "examples" / "agent.py") + ":graph"},
                    "auth": {"path": "./auth.py:auth"},
                }
            )
        )
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE")
        }
        env.update(
            {
                "CRONSVC_DATA_DIR": str(folder / "data"),
                "LANGGRAPH_CONFIG": str(folder / "langgraph.json"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        argv = [sys.executable, "manage.py", "dev", "--port", str(port), "--no-worker", "--no-beat"]
        proc = Proc(argv, env, f"manage.py dev ({variant})")
        url = f"http://127.0.0.1:{port}"
        servers[variant] = (proc, url)
        proc.wait_for("cronsvc API on", timeout=90)
        assert (folder / "data" / "cronsvc.sqlite3").exists()
        return url

    yield start
    for proc, _ in servers.values():
        proc.stop(signal.SIGTERM, timeout=30)
        assert "Traceback" not in proc.output(), proc.output()[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_other_users_resources_are_invisible_on_sqlite(embedded_server, variant):
    """The same isolation on the embedded default, where the filters compile to
    SQLite's JSON functions (cronsvc/filters.py) instead of PostgreSQL's."""
    url = embedded_server(variant)
    ada, bob = client(url, "token-ada"), client(url, "token-bob")
    assert http(url, "POST", "/threads/search", token=None, json={}).status_code == 401
    assert_isolated(ada, bob, url, variant)


def test_without_or_with_an_unknown_token_401_and_ok_is_public(users, live_server):
    users(owner_auth())
    for token in (None, "nope"):
        answer = http(live_server, "POST", "/threads/search", token=token, json={})
        assert answer.status_code == 401
        assert answer.json() == {"detail": "Invalid token"}
    assert http(live_server, "GET", "/ok", token=None).status_code == 200
    assert http(live_server, "GET", "/openapi.json", token=None).status_code == 200


def test_api_keys_are_not_required_with_custom_auth(users, live_server, settings):
    settings.CRONSVC_API_KEYS = ["secret"]
    ada, _ = users(owner_auth())
    assert ada.threads.search() == []


def test_handler_errors_keep_their_status(users, live_server):
    auth = Auth()

    @auth.authenticate
    def authenticate(headers: dict, path: str, method: str) -> str:  # a sync handler
        if headers.get(b"x-team") == b"blocked":
            raise Auth.exceptions.HTTPException(status_code=418, detail="teapot")
        if headers.get(b"x-team") == b"broken":
            raise RuntimeError("boom")
        assert path.startswith("/") and method in ("GET", "POST")
        return headers.get(b"x-team", b"anon").decode()

    users(auth)
    answer = httpx.post(live_server.url + "/threads/search", json={}, headers={"x-team": "blocked"})
    assert (answer.status_code, answer.json()) == (418, {"detail": "teapot"})
    answer = httpx.post(live_server.url + "/threads/search", json={}, headers={"x-team": "broken"})
    assert answer.status_code == 401
    answer = httpx.post(live_server.url + "/threads", json={}, headers={"x-team": "red"})
    assert answer.status_code == 200


def test_false_is_403(users):
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on.threads.create
    async def no_threads(ctx, value):
        return False

    ada, _ = users(auth)
    assert status_of(lambda: ada.threads.create()) == 403
    assert Thread.objects.count() == 0
    assert status_of(lambda: ada.crons.create("agent", schedule="0 9 * * *")) == 200


def test_mutated_metadata_is_stored_and_a_filtered_update_changes_nothing(users, live_server):
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on(resources=["threads", "crons", "assistants"], actions=["create"])
    async def stamp(ctx, value):
        value["metadata"] = {**(value.get("metadata") or {}), "owner": ctx.user.identity}

    @auth.on(resources=["threads", "crons"], actions=["update", "delete"])
    async def only_owner_changes(ctx, value):
        return {"owner": ctx.user.identity}

    ada, bob = users(auth)  # reads and searches are open to all here
    thread = ada.threads.create(metadata={"topic": "x"})
    assert thread["metadata"] == {"topic": "x", "owner": "ada"}
    cron = ada.crons.create("agent", schedule="0 9 * * *", metadata={"team": "ops"})
    assert cron["metadata"] == {"team": "ops", "owner": "ada"}
    assert Cron.objects.get(pk=cron["cron_id"]).payload["metadata"] == {"team": "ops"}
    assistant = ada.assistants.create("agent", metadata={"a": 1})
    assert assistant["metadata"] == {"a": 1, "owner": "ada"}

    assert bob.threads.get(thread["thread_id"])["thread_id"] == thread["thread_id"]
    assert status_of(lambda: bob.threads.update(thread["thread_id"], metadata={"y": 2})) == 404
    assert status_of(lambda: bob.crons.update(cron["cron_id"], schedule="5 5 * * *")) == 404
    assert status_of(lambda: bob.crons.delete(cron["cron_id"])) == 404
    assert Thread.objects.get(pk=thread["thread_id"]).metadata == {"topic": "x", "owner": "ada"}
    stored = Cron.objects.get(pk=cron["cron_id"])
    assert (stored.schedule, stored.metadata) == ("0 9 * * *", {"team": "ops", "owner": "ada"})

    updated = ada.threads.update(thread["thread_id"], metadata={"y": 2})
    assert updated["metadata"] == {"topic": "x", "owner": "ada", "y": 2}


def test_a_thread_cron_is_not_found_where_its_thread_is_not(users, live_server):
    """A cron on a thread the caller's threads handler filters out is a 404 on
    get, update and delete (and absent from search), whatever crons allows."""
    auth = Auth()
    authenticate_with_tokens(auth)
    asked: list = []

    @auth.on.threads
    async def own_threads(ctx, value):
        if ctx.action == "create":
            value["metadata"] = {**(value.get("metadata") or {}), "owner": ctx.user.identity}
        elif ctx.action == "read":
            asked.append(value.get("thread_id"))
        return {"owner": ctx.user.identity}

    ada, bob = users(auth)  # no crons handler: crons themselves are open to all
    thread = ada.threads.create()
    cron = ada.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 9 * * *")
    stateless = ada.crons.create("agent", schedule="0 10 * * *")
    cron_id = cron["cron_id"]

    asked.clear()
    assert http(live_server, "GET", f"/runs/crons/{cron_id}").status_code == 404
    assert status_of(lambda: bob.crons.update(cron_id, schedule="0 1 * * *", enabled=False)) == 404
    assert status_of(lambda: bob.crons.delete(cron_id)) == 404
    # the handler is asked about the cron's thread, by id
    assert {str(t) for t in asked} == {thread["thread_id"]}
    assert [c["cron_id"] for c in bob.crons.search()] == [stateless["cron_id"]]
    assert bob.crons.count() == 1
    stored = Cron.objects.get(pk=cron_id)
    assert (stored.schedule, stored.enabled) == ("0 9 * * *", True)

    # A stateless cron has no thread to hide it; the thread's owner keeps hers.
    changed = bob.crons.update(stateless["cron_id"], schedule="0 11 * * *")
    assert changed["schedule"] == "0 11 * * *"
    assert ada.crons.update(cron_id, schedule="0 1 * * *")["schedule"] == "0 1 * * *"
    ada.crons.delete(cron_id)
    assert not Cron.objects.filter(pk=cron_id).exists()


def test_a_crons_create_filter_applies_to_the_thread_and_the_assistant(users):
    """As on the LangGraph Server: a filter from crons.create must match a
    thread cron's thread and an assistant other than the default ones, else
    404 and no cron; False is a 403."""
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on(resources=["threads", "assistants"], actions=["create"])
    async def stamp(ctx, value):
        value["metadata"] = {**(value.get("metadata") or {}), "owner": ctx.user.identity}

    @auth.on.crons.create
    async def on_own_things(ctx, value):
        if ctx.user.identity == "bob" and value["payload"].get("schedule") == "1 1 * * *":
            return False
        value["metadata"]["owner"] = ctx.user.identity  # value always carries metadata
        return {"owner": ctx.user.identity}

    ada, bob = users(auth)  # reads are open to all here
    thread = ada.threads.create()
    assistant = ada.assistants.create("agent")
    assert bob.threads.get(thread["thread_id"])["thread_id"] == thread["thread_id"]
    assert bob.assistants.get(assistant["assistant_id"])["assistant_id"]

    tid, aid = thread["thread_id"], assistant["assistant_id"]
    assert status_of(lambda: bob.crons.create_for_thread(tid, "agent", schedule="0 9 * * *")) == 404
    assert status_of(lambda: bob.crons.create(aid, schedule="0 9 * * *")) == 404
    assert status_of(lambda: bob.crons.create("agent", schedule="1 1 * * *")) == 403
    assert status_of(lambda: bob.crons.create_for_thread(tid, "agent", schedule="1 1 * * *")) == 403
    assert Cron.objects.count() == 0

    # The default assistants pass; ada's own thread and assistant do.
    assert bob.crons.create("agent", schedule="0 9 * * *")["metadata"] == {"owner": "bob"}
    mine = ada.crons.create_for_thread(tid, aid, schedule="0 9 * * *", metadata={"k": 1})
    assert Cron.objects.get(pk=mine["cron_id"]).metadata == {"k": 1, "owner": "ada"}
    assert Cron.objects.count() == 2


def test_crons_handlers_changes_to_the_payload_are_stored(users):
    """What a crons.create or crons.update handler leaves in value["payload"]
    and value["metadata"], changed in place or replaced, is what is stored."""
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on.crons
    async def bill(ctx, value):
        if ctx.action in ("create", "update"):
            payload = value.get("payload") or {}
            run_metadata = {**(payload.get("metadata") or {}), "billed_to": ctx.user.identity}
            value["payload"] = {**payload, "metadata": run_metadata}
            value["metadata"] = {**(value.get("metadata") or {}), "by": ctx.user.identity}

    ada, bob = users(auth)
    cron = ada.crons.create("agent", schedule="0 9 * * *", metadata={"team": "ops"}, input=QUESTION)
    assert cron["metadata"] == {"team": "ops", "by": "ada"}
    stored = Cron.objects.get(pk=cron["cron_id"])
    assert stored.payload["metadata"] == {"team": "ops", "billed_to": "ada"}
    assert stored.payload["input"] == QUESTION
    assert stored.metadata == {"team": "ops", "by": "ada"}

    updated = bob.crons.update(cron["cron_id"], schedule="0 10 * * *")
    assert updated["metadata"] == {"team": "ops", "by": "bob"}
    stored.refresh_from_db()
    # a PATCH's run options replace the payload's (here: its metadata)
    assert stored.payload["metadata"] == {"billed_to": "bob"}
    assert stored.payload["input"] == QUESTION
    assert (stored.schedule, stored.metadata) == ("0 10 * * *", {"team": "ops", "by": "bob"})

    # The runs of its ticks carry the payload's metadata.
    _, instant = _due(cron["cron_id"])
    assert ticking.fire_due(now=instant).fired == 1
    assert Run.objects.get(cron_id=cron["cron_id"]).metadata["billed_to"] == "bob"


def test_runs_carry_their_user_in_configurable(users):
    ada, _ = users(owner_auth())
    thread = ada.threads.create()
    run = ada.runs.create(thread["thread_id"], "agent", input=QUESTION)
    configurable = build_config(Run.objects.get(pk=run["run_id"]))["configurable"]
    assert configurable["langgraph_auth_user_id"] == "ada"
    assert configurable["langgraph_auth_permissions"] == ["team:ada"]
    assert configurable["langgraph_auth_user"]["identity"] == "ada"
    assert configurable["langgraph_auth_user"]["plan"] == "pro"


# ------------------------------------------------------------------ crons fire as their owner


def _due(cron_id) -> tuple[Cron, dt.datetime]:
    cron = Cron.objects.select_related("assistant", "thread").get(pk=cron_id)
    return cron, cron.next_run_date


@pytest.mark.parametrize("path", ["batch", "one by one"])
def test_a_cron_fires_as_its_owner(users, path):
    ada, _ = users(owner_auth())
    cron = ada.crons.create("agent", schedule="0 9 * * *", input=QUESTION)
    stored, instant = _due(cron["cron_id"])
    assert stored.owner["identity"] == "ada" and stored.owner["permissions"] == ["team:ada"]

    # The beat has no request user: the cron's owner is who it runs as.
    if path == "batch":
        report = ticking.fire_due(now=instant)
        assert report.fired == 1
    else:
        dispatch.fire_tick(stored, instant)
    tick = Tick.objects.get(cron_id=cron["cron_id"])
    assert tick.status == Tick.Status.FIRED
    run = Run.objects.select_related("thread", "assistant").get(pk=tick.run_id)
    configurable = build_config(run)["configurable"]
    assert configurable["langgraph_auth_user_id"] == "ada"
    assert configurable["langgraph_auth_user"]["plan"] == "pro"
    # threads.create ran as ada: her thread, hers to read.
    assert run.thread.metadata["owner"] == "ada"
    assert run.metadata["owner"] == "ada"
    assert ada.threads.get(str(run.thread_id))["metadata"]["owner"] == "ada"


@pytest.mark.parametrize("path", ["batch", "one by one"])
def test_a_denied_owner_makes_the_tick_rejected(users, path):
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on.threads.create_run
    async def no_runs_for_bob(ctx, value):
        if ctx.user.identity == "bob":
            raise Auth.exceptions.HTTPException(status_code=403, detail="bob is over quota")

    _, bob = users(auth)
    cron = bob.crons.create("agent", schedule="0 9 * * *", input=QUESTION)
    stored, instant = _due(cron["cron_id"])
    if path == "batch":
        report = ticking.fire_due(now=instant)
        assert (report.fired, report.rejected) == (0, 1)
        assert Cron.objects.get(pk=stored.pk).needs_advance  # it moves on
    else:
        dispatch.fire_tick(stored, instant)
    tick = Tick.objects.get(cron_id=cron["cron_id"])
    assert tick.status == Tick.Status.REJECTED
    assert "bob is over quota" in tick.reason and "threads.create_run" in tick.reason
    assert Run.objects.count() == 0
    assert Thread.objects.count() == 0


def test_trigger_and_backfill_need_update_ticks_and_schedule_need_read(
    users, live_server, parked_runs
):
    auth = Auth()
    authenticate_with_tokens(auth)

    @auth.on(resources=["threads", "crons"], actions=["create"])
    async def stamp(ctx, value):
        value["metadata"] = {**(value.get("metadata") or {}), "owner": ctx.user.identity}

    @auth.on(resources=["crons"], actions=["update", "delete"])
    async def only_owner_changes(ctx, value):
        return {"owner": ctx.user.identity}

    ada, _ = users(auth)  # crons.read is open here
    cron = ada.crons.create("agent", schedule="*/10 * * * *", input=QUESTION)
    base = f"/runs/crons/{cron['cron_id']}"
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    window = {"start": (end - dt.timedelta(hours=1)).isoformat(), "end": end.isoformat()}

    assert http(live_server, "GET", f"{base}/ticks").status_code == 200
    assert http(live_server, "GET", f"{base}/schedule").status_code == 200
    assert http(live_server, "POST", f"{base}/trigger", json={}).status_code == 404
    assert http(live_server, "POST", f"{base}/backfill", json=window).status_code == 404
    assert (Tick.objects.count(), Run.objects.count()) == (0, 0)

    # The owner may; the tick fires as the owner (threads.create ran as ada).
    triggered = ada.http.post(f"{base}/trigger", json=None)
    run = Run.objects.select_related("thread", "assistant").get(pk=triggered["run_id"])
    assert build_config(run)["configurable"]["langgraph_auth_user_id"] == "ada"
    assert run.thread.metadata["owner"] == "ada"
    assert ada.http.post(f"{base}/backfill", json=window)["fired"] == 6

    @auth.on(resources=["crons"], actions=["read"])
    async def only_owner_reads(ctx, value):
        return {"owner": ctx.user.identity}

    assert http(live_server, "GET", f"{base}/ticks").status_code == 404
    assert http(live_server, "GET", f"{base}/schedule").status_code == 404
    assert len(ada.http.get(f"{base}/ticks", params={"limit": 100})) == 7


def test_a_cron_on_a_thread_its_owner_lost_is_rejected(users):
    ada, _ = users(owner_auth())
    thread = ada.threads.create()
    cron = ada.crons.create_for_thread(thread["thread_id"], "agent", schedule="0 9 * * *")
    Thread.objects.filter(pk=thread["thread_id"]).update(metadata={"owner": "someone else"})
    stored, instant = _due(cron["cron_id"])
    dispatch.fire_tick(stored, instant)
    tick = Tick.objects.get(cron_id=cron["cron_id"])
    assert tick.status == Tick.Status.REJECTED and "not found" in tick.reason


def test_crons_without_an_owner_fire_as_before(settings):
    from crons.services import cron_create
    from cronsvc.selectors import assistant_get_or_404

    cron = cron_create(assistant=assistant_get_or_404("agent"), schedule="0 9 * * *")
    settings.CRONSVC_AUTH = owner_auth()
    _, instant = _due(cron.pk)
    assert ticking.fire_due(now=instant).fired == 1
    run = Run.objects.get()
    assert "langgraph_auth_user_id" not in build_config(run)["configurable"]


# ------------------------------------------------------------------ loading


def write_config(tmp_path, auth_source: str | None, path: str = "./auth.py:auth"):
    if auth_source is not None:
        (tmp_path / "auth.py").write_text(textwrap.dedent(auth_source))
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {}, "auth": {"path": path}}))
    return config


def test_loads_the_auth_of_langgraph_json(tmp_path, caplog):
    config = write_config(
        tmp_path,
        """
        from langgraph_sdk import Auth
        auth = Auth()

        @auth.authenticate
        async def authenticate(authorization):
            return "someone"

        @auth.on.threads
        async def threads(ctx, value):
            return None
        """,
    )
    auth = custom_auth.load_auth(config)
    assert isinstance(auth, Auth)
    assert "crons.create" in caplog.text and "threads.read" not in caplog.text


def test_a_module_path_relative_to_the_config(tmp_path):
    package = tmp_path / "myauthpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "rules.py").write_text(
        "from langgraph_sdk import Auth\nauth = Auth()\n"
        "@auth.authenticate\nasync def a(authorization): return 'x'\n"
    )
    config = write_config(tmp_path, None, path="myauthpkg.rules:auth")
    assert isinstance(custom_auth.load_auth(config), Auth)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("from langgraph_sdk import Auth\nauth = Auth()\n", "no @auth.authenticate handler"),
        ("auth = object()\n", "not a langgraph_sdk.Auth"),
        ("from langgraph_sdk import Auth\nother = Auth()\n", "has no 'auth'"),
    ],
)
def test_a_config_that_cannot_work_fails_clearly(tmp_path, source, message):
    config = write_config(tmp_path, source)
    with pytest.raises(ImproperlyConfigured, match=message):
        custom_auth.load_auth(config)


def test_handlers_share_one_event_loop():
    loops = set()

    async def which():
        import asyncio

        loops.add(id(asyncio.get_running_loop()))

    for _ in range(3):
        custom_auth.run_async(which())
    assert len(loops) == 1


def test_the_admin_shows_each_crons_owner(users, admin_client):
    ada, bob = users(owner_auth())
    mine = ada.crons.create("agent", schedule="0 9 * * *")
    bob.crons.create("agent", schedule="0 10 * * *")
    page = admin_client.get("/admin/crons/cron/").content.decode()
    assert ">ada<" in page and ">bob<" in page  # the operator sees every user's crons
    detail = admin_client.get(f"/admin/crons/cron/{mine['cron_id']}/change/").content.decode()
    assert "team:ada" in detail


# ------------------------------------------------------------------ adrf async views


class WhoAmI(AsyncAPIView):
    """An async view as the serving issue writes them: the ORM through sync_to_async."""

    async def get(self, request):
        def visible():
            return sorted(t.metadata["name"] for t in thread_search())

        names = await sync_to_async(visible)()
        current = custom_auth.current_user()
        return Response(
            {
                "user": request.user.identity,
                "current": current.identity if current else None,
                "threads": names,
            }
        )


urlpatterns = [path("whoami", WhoAmI.as_view()), *root_urls.urlpatterns]


def test_async_adrf_views_authenticate_and_authorize_alike(settings):
    settings.CRONSVC_AUTH = owner_auth()
    settings.ROOT_URLCONF = __name__
    Thread.objects.create(metadata={"owner": "ada", "name": "ada's"})
    Thread.objects.create(metadata={"owner": "bob", "name": "bob's"})
    client = Client()
    answer = client.get("/whoami", headers={"Authorization": "Bearer token-ada"})
    assert answer.json() == {"user": "ada", "current": "ada", "threads": ["ada's"]}
    assert client.get("/whoami").status_code == 401
    answer = client.get("/whoami", headers={"Authorization": "Bearer token-bob"})
    assert answer.json()["threads"] == ["bob's"]
    # and nothing is left behind for the next request of the thread
    assert custom_auth.current_user() is None


# ------------------------------------------------------------------ the platform's endpoints


def test_store_handlers_scope_the_namespace(users, live_server):
    auth = owner_auth()

    @auth.on.store
    async def scope(ctx, value):
        namespace = tuple(value.get("namespace") or ())
        if not namespace or namespace[0] != ctx.user.identity:
            value["namespace"] = (ctx.user.identity, *namespace)

    ada, bob = users(auth)
    ada.store.put_item(["notes"], "today", {"text": "ada's"})
    assert ada.store.get_item(["notes"], "today")["value"] == {"text": "ada's"}
    assert ada.store.get_item(["notes"], "today")["namespace"] == ["ada", "notes"]
    assert bob.store.get_item(["notes"], "today") is None
    assert bob.store.search_items(["notes"])["items"] == []
    assert [i["key"] for i in ada.store.search_items(["notes"])["items"]] == ["today"]
    assert http(live_server, "GET", "/info", token=None).status_code == 200


def test_store_handlers_keep_two_users_writes_and_deletes_apart(users):
    auth = owner_auth()

    @auth.on.store
    async def scope(ctx, value):
        namespace = tuple(value.get("namespace") or ())
        if not namespace or namespace[0] != ctx.user.identity:
            value["namespace"] = (ctx.user.identity, *namespace)

    ada, bob = users(auth)
    ns = ["memo", uuid.uuid4().hex]
    ada.store.put_item(ns, "k", {"who": "ada"})
    bob.store.put_item(ns, "k", {"who": "bob"})  # bob's own item, not ada's overwritten
    assert ada.store.get_item(ns, "k")["value"] == {"who": "ada"}
    assert bob.store.get_item(ns, "k")["value"] == {"who": "bob"}
    assert bob.store.get_item(ns, "k")["namespace"] == ["bob", *ns]
    bob.store.delete_item(ns, "k")  # deletes bob's only
    assert bob.store.get_item(ns, "k") is None
    assert ada.store.get_item(ns, "k")["value"] == {"who": "ada"}
    # Naming the other user's namespace outright is rescoped to one's own.
    assert bob.store.get_item(["ada", *ns], "k") is None


def test_versions_copy_and_prune_follow_the_owner(users):
    ada, bob = users(owner_auth())
    assistant = ada.assistants.create("agent", name="v1")
    ada.assistants.update(assistant["assistant_id"], name="v2")
    assert status_of(lambda: bob.assistants.set_latest(assistant["assistant_id"], 1)) == 404
    assert status_of(lambda: bob.assistants.get_versions(assistant["assistant_id"])) == 404
    assert ada.assistants.set_latest(assistant["assistant_id"], 1)["name"] == "v1"

    thread = ada.threads.create()
    copy = ada.threads.copy(thread["thread_id"])
    assert copy["metadata"]["owner"] == "ada"
    assert status_of(lambda: bob.threads.copy(thread["thread_id"])) == 404
    assert bob.threads.prune([thread["thread_id"]])["pruned_count"] == 0
    assert Thread.objects.filter(pk=thread["thread_id"]).exists()
    assert ada.threads.prune([thread["thread_id"]])["pruned_count"] == 1


@pytest.mark.usefixtures("parked_runs")
def test_bulk_cancel_and_batch_runs_follow_the_owner(users):
    ada, bob = users(owner_auth())
    thread = ada.threads.create()
    run = ada.runs.create(thread["thread_id"], "agent", input=QUESTION)
    bob.runs.cancel_many(status="all")  # cancels bob's runs only
    assert Run.objects.get(pk=run["run_id"]).status == "pending"
    assert (
        status_of(
            lambda: bob.runs.cancel_many(thread_id=thread["thread_id"], run_ids=[run["run_id"]])
        )
        == 404
    )
    batch = bob.runs.create_batch([{"assistant_id": "agent", "input": QUESTION}])
    assert Thread.objects.get(pk=batch[0]["thread_id"]).metadata["owner"] == "bob"
    ada.runs.cancel_many(status="all")
    assert Run.objects.get(pk=run["run_id"]).status != "pending"


def test_a_handler_that_never_awaits_runs_on_the_callers_thread():
    """No hand-over to the auth loop for a handler that cannot suspend: its
    result and its exceptions are the same, on the request's thread."""
    import threading

    threads = []

    async def lookup(identity):
        threads.append(threading.current_thread())
        if identity == "nobody":
            raise Auth.exceptions.HTTPException(status_code=401, detail="who?")
        return {"owner": identity}

    assert custom_auth.run_async(lookup("ada")) == {"owner": "ada"}
    with pytest.raises(Auth.exceptions.HTTPException, match="who"):
        custom_auth.run_async(lookup("nobody"))
    assert threads == [threading.current_thread()] * 2


def test_a_handler_that_awaits_or_touches_the_loop_runs_on_the_auth_loop():
    import asyncio
    import threading

    threads = []

    async def awaits():
        await asyncio.sleep(0)
        threads.append(threading.current_thread())

    async def spawns():
        threads.append(threading.current_thread())
        asyncio.get_running_loop()

    custom_auth.run_async(awaits())
    custom_auth.run_async(spawns())
    assert len(threads) == 2
    assert threading.current_thread() not in threads
