"""End to end with custom auth from langgraph.json: langgraph_sdk with bearer
tokens → API → beat (its own process, loading the same langgraph.json) →
worker. A cron fires as its owner; a handler that refuses the owner's run
makes the tick rejected and nothing runs.
"""

import datetime as dt
import json
import textwrap
import time

import pytest
from langgraph_sdk import get_sync_client

from crons.models import Tick
from cronsvc.settings import BASE_DIR
from runs.models import Run
from tests.conftest import start_beat, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}

AUTH = """
from langgraph_sdk import Auth

auth = Auth()
TOKENS = {"token-ada": "ada", "token-bob": "bob"}


@auth.authenticate
async def authenticate(authorization):
    scheme, _, token = (authorization or "").partition(" ")
    if token not in TOKENS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return {"identity": TOKENS[token], "permissions": ["runs"]}


@auth.on
async def owner_only(ctx, value):
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    if metadata is None:
        metadata = value["metadata"] = {}
    metadata.update(filters)
    return filters


@auth.on.threads.create_run
async def runs(ctx, value):
    if ctx.user.identity == "bob":
        raise Auth.exceptions.HTTPException(status_code=403, detail="bob may not run")
    value.setdefault("metadata", {})["owner"] = ctx.user.identity
    return {"owner": ctx.user.identity}
"""


@pytest.fixture
def auth_config(tmp_path, settings):
    (tmp_path / "auth.py").write_text(textwrap.dedent(AUTH))
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "graphs": {
                    "agent": str(BASE_DIR / "examples" / "agent.py") + ":graph",
                    "slow": str(BASE_DIR / "examples" / "slow.py") + ":graph",
                },
                "auth": {"path": "./auth.py:auth"},
            }
        )
    )
    settings.LANGGRAPH_CONFIG = config
    return config


def test_crons_fire_as_their_owner_through_beat(live_server, worker, auth_config, tmp_path):
    ada = get_sync_client(
        url=live_server.url, api_key=None, headers={"Authorization": "Bearer token-ada"}
    )
    bob = get_sync_client(
        url=live_server.url, api_key=None, headers={"Authorization": "Bearer token-bob"}
    )
    beat = start_beat(tmp_path, LANGGRAPH_CONFIG=str(auth_config))
    try:
        if dt.datetime.now(dt.UTC).second >= 55:
            time.sleep(6)
        thread = ada.threads.create()
        mine = ada.crons.create_for_thread(
            thread["thread_id"], "agent", schedule="* * * * *", input=QUESTION
        )
        stateless = ada.crons.create(
            "agent", schedule="* * * * *", input=QUESTION, on_run_completed="keep"
        )
        refused = bob.crons.create("agent", schedule="* * * * *", input=QUESTION)
        assert [c["cron_id"] for c in bob.crons.search()] == [refused["cron_id"]]

        runs = wait_until(
            lambda: [r for r in ada.runs.list(thread["thread_id"]) if r["status"] == "success"],
            timeout=90,
        )
        configurable = runs[0]["kwargs"]["config"]["configurable"]
        assert configurable["langgraph_auth_user_id"] == "ada"
        assert configurable["langgraph_auth_permissions"] == ["runs"]
        assert runs[0]["metadata"]["owner"] == "ada"

        tick = wait_until(
            lambda: Tick.objects.filter(cron_id=stateless["cron_id"], status="fired").first(),
            timeout=30,
        )
        run = wait_until(
            lambda: Run.objects.filter(pk=tick.run_id, status="success").first(), timeout=30
        )
        # The stateless cron's thread is ada's: she reads it, bob does not.
        assert ada.threads.get(str(run.thread_id))["metadata"]["owner"] == "ada"
        assert str(run.thread_id) not in {t["thread_id"] for t in bob.threads.search()}

        rejected = wait_until(
            lambda: Tick.objects.filter(cron_id=refused["cron_id"]).first(), timeout=30
        )
        assert rejected.status == Tick.Status.REJECTED
        assert "bob may not run" in rejected.reason
        assert not Run.objects.filter(cron_id=refused["cron_id"]).exists()
        for cron in (mine, stateless):
            ada.crons.delete(cron["cron_id"])
        bob.crons.delete(refused["cron_id"])
    finally:
        beat.stop()
