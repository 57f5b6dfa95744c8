"""The strict JSON parser (cronsvc/http/parsers.py): bodies nobody can store are a
422 with a `detail`, nothing is written, and the server answers as before."""

import pytest

from crons.models import Cron
from cronsvc.services import assistants_ensure_defaults

pytestmark = pytest.mark.django_db

CRON = '{"assistant_id": "agent", "schedule": "* * * * *", "metadata": %s}'


@pytest.fixture(autouse=True)
def default_assistants():
    assistants_ensure_defaults()


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ('{"\\ud800": "\\udfff"}', "lone UTF-16 surrogates"),
        ('{"k": "a\\u0000b"}', "NUL"),
        ('{"k": NaN}', "Invalid JSON"),
        ('{"k": Infinity}', "Invalid JSON"),
        ('{"k": ' + "[" * 400 + "]" * 400 + "}", "nested deeper than 64 levels"),
        ('{"k": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 64 levels"),
    ],
    ids=["surrogates", "nul", "nan", "infinity", "deep", "very-deep"],
)
def test_a_body_nobody_can_store_is_refused_and_nothing_is_written(client, metadata, detail):
    response = client.post("/runs/crons", CRON % metadata, content_type="application/json")
    assert response.status_code == 422
    assert detail in response.json()["detail"]
    assert Cron.objects.count() == 0
    search = client.post("/runs/crons/search", "{}", content_type="application/json")
    assert search.status_code == 200
    assert search.json() == []


def test_a_deep_but_reasonable_body_is_accepted(client):
    nested = '{"a": ' * 30 + "1" + "}" * 30
    response = client.post("/runs/crons", CRON % nested, content_type="application/json")
    assert response.status_code == 200, response.content
