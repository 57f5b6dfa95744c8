"""The LangSmith cron docs' code, verbatim, against a live cronsvc."""

import asyncio

import pytest
from langgraph_sdk import get_client

from crons.models import Cron

pytestmark = pytest.mark.django_db(transaction=True)


def test_langsmith_cron_docs_flow(live_server):
    async def docs_flow():
        client = get_client(url=live_server.url, api_key=None)
        # -- from the docs --
        assistant_id = "agent"
        thread = await client.threads.create()
        cron_job = await client.crons.create_for_thread(
            thread["thread_id"],
            assistant_id,
            schedule="27 15 * * *",
            input={"messages": [{"role": "user", "content": "What time is it?"}]},
        )
        cron_job_stateless = await client.crons.create(
            assistant_id,
            schedule="27 15 * * *",
            input={"messages": [{"role": "user", "content": "What time is it?"}]},
        )
        found = await client.crons.search(thread_id=thread["thread_id"])
        await client.crons.delete(cron_job["cron_id"])
        await client.crons.delete(cron_job_stateless["cron_id"])
        return thread, cron_job, cron_job_stateless, found

    thread, cron_job, stateless, found = asyncio.run(docs_flow())

    assert cron_job["thread_id"] == thread["thread_id"]
    assert cron_job["schedule"] == "27 15 * * *"
    assert cron_job["on_run_completed"] is None
    assert stateless["thread_id"] is None
    assert stateless["on_run_completed"] == "delete"
    assert cron_job["next_run_date"].endswith("15:27:00+00:00")
    assert [c["cron_id"] for c in found] == [cron_job["cron_id"]]
    assert Cron.objects.count() == 0
