"""A webhook URL that can never be delivered is refused when the run or cron
is created (422 with a `detail`), and nothing is written."""

import json

import pytest

from crons.models import Cron
from runs.models import Run
from threads.models import Thread

pytestmark = pytest.mark.django_db

BAD = [
    ("file:///etc/passwd", "Invalid webhook scheme 'file'"),
    ("not a url", "Invalid webhook scheme ''"),
    ("ftp://hooks.example.com/x", "Invalid webhook scheme 'ftp'"),
    ("http:///hook", "Invalid webhook hostname"),
    ("https://", "Invalid webhook hostname"),
    ("http://hooks.example.com:99999/x", "Invalid webhook URL"),
    ("http://hooks.example.com/" + "a" * 2048, "longer than 2048 characters"),
    ("http://hooks.example.com/a b", "must not contain whitespace"),
]


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def counts():
    return (Run.objects.count(), Thread.objects.count(), Cron.objects.count())


@pytest.fixture
def thread_id(client):
    return post(client, "/threads", {}).json()["thread_id"]


@pytest.mark.parametrize(("url", "detail"), BAD)
@pytest.mark.parametrize(
    "path",
    [
        "/runs",
        "/runs/wait",
        "/runs/stream",
        "/threads/{t}/runs",
        "/threads/{t}/runs/wait",
        "/threads/{t}/runs/stream",
        "/runs/crons",
        "/threads/{t}/runs/crons",
    ],
)
def test_an_undeliverable_webhook_is_422_and_nothing_is_written(
    client, thread_id, path, url, detail
):
    before = counts()
    body = {"assistant_id": "agent", "webhook": url}
    if path.endswith("crons"):
        body["schedule"] = "*/5 * * * *"
    response = post(client, path.format(t=thread_id), body)
    assert response.status_code == 422, response.content
    assert detail in response.json()["detail"]
    assert counts() == before


@pytest.mark.parametrize(("url", "detail"), BAD[:3])
def test_a_cron_patched_to_an_undeliverable_webhook_is_422_and_unchanged(client, url, detail):
    cron = post(
        client,
        "/runs/crons",
        {
            "assistant_id": "agent",
            "schedule": "*/5 * * * *",
            "webhook": "https://hooks.example.com/a",
        },
    ).json()
    response = client.patch(
        f"/runs/crons/{cron['cron_id']}",
        json.dumps({"webhook": url}),
        content_type="application/json",
    )
    assert response.status_code == 422, response.content
    assert detail in response.json()["detail"]
    assert Cron.objects.get(pk=cron["cron_id"]).payload["webhook"] == "https://hooks.example.com/a"


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x?y=1", "http://127.0.0.1:9/hook", "http://[::1]:8080/x"]
)
def test_http_urls_with_a_host_are_accepted_at_create_time(client, url):
    # Whether the address may be reached is decided when sending (the guard).
    response = post(
        client, "/runs/crons", {"assistant_id": "agent", "schedule": "*/5 * * * *", "webhook": url}
    )
    assert response.status_code == 200, response.content
