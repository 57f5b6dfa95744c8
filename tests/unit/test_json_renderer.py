"""cronsvc.http.outputs.JSONRenderer writes what DRF's JSONRenderer writes."""

import datetime
import decimal
import uuid

import pytest
from rest_framework.renderers import JSONRenderer as DRFJSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from cronsvc.http.outputs import JSONRenderer

NOW = datetime.datetime(2026, 12, 1, 5, 0, 0, 123456, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": [1.5, None, True, False], "s": "é ü 日本", "nested": {"x": [{}]}},
        {"u": uuid.UUID("6decf427-718e-46b2-a8d5-d73b918fe67e"), "d": NOW, "day": NOW.date()},
        {"t": NOW.time(), "delta": datetime.timedelta(seconds=90), "n": decimal.Decimal("1.10")},
        ReturnDict({"a": "ü"}, serializer=None),
        ReturnList([{"k": "v"}], serializer=None),
        {"big": 2**70, 1: "an int key"},
        {"separator": "line\u2028paragraph\u2029"},
        "a string",
        3,
        [],
        None,
    ],
)
def test_the_same_bytes_as_drf(data):
    assert JSONRenderer().render(data) == DRFJSONRenderer().render(data)


def test_indented_as_drf():
    data = {"a": [1, 2]}
    context = {"indent": 2}
    assert JSONRenderer().render(data, None, context) == DRFJSONRenderer().render(
        data, None, context
    )
