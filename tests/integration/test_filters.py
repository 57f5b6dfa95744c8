"""One LangGraph filter compiler (cronsvc.filters): the same filter selects the
same rows on PostgreSQL and on SQLite, keys are JSON keys taken literally, and
a filter that breaks the grammar is refused."""

import json
import sqlite3
import uuid

import pytest
from django.db import connection

from cronsvc.filters import InvalidFilter, postgres_sql, sqlite_sql, validate

DOCS = [
    {"owner": "alice", "tags": ["a", "b"], "n": 1, "flag": True, "nested": {"x": 1, "y": [1, 2]}},
    {"owner": "bob", "tags": ["b"], "n": 1.0, "flag": False, "nested": {"x": 2}},
    {"owner": "carol", "tags": [], "n": "1", "flag": None, "k__regex": "^(a+)+$", "a b": 1},
    {"owner": "dave", "tags": [{"id": 1}, "c"], "n": 2, "items": [[1, 2], [3]]},
    {},
]

CASES = [
    ({"owner": "alice"}, [0]),
    ({"owner": "nobody"}, []),
    ({"n": 1}, [0, 1]),
    ({"n": "1"}, [2]),
    ({"flag": True}, [0]),
    ({"flag": False}, [1]),
    ({"flag": None}, [2]),
    ({"nested": {"x": 1}}, [0]),
    ({"nested": {"y": [2]}}, [0]),
    ({"tags": ["b"]}, [0, 1]),
    ({"tags": ["a", "b"]}, [0]),
    ({"tags": []}, [0, 1, 2, 3]),
    ({"tags": [{"id": 1}]}, [3]),
    ({"items": [[3]]}, [3]),
    ({"owner": "alice", "n": 1}, [0]),
    ({"owner": {"$eq": "bob"}}, [1]),
    ({"nested": {"$eq": {"x": 2}}}, [1]),
    ({"nested": {"$eq": {"x": 1}}}, []),
    ({"tags": {"$eq": ["b"]}}, [1]),
    ({"tags": {"$contains": "b"}}, [0, 1]),
    ({"tags": {"$contains": ["a", "b"]}}, [0]),
    ({"tags": {"$contains": "c"}}, [3]),
    ({"owner": {"$contains": "alice"}}, []),
    ({"$or": [{"owner": "alice"}, {"owner": "bob"}]}, [0, 1]),
    ({"$or": [{"owner": "alice"}, {"tags": {"$contains": "c"}}], "n": 2}, [3]),
    ({"k__regex": "^(a+)+$"}, [2]),
    ({"k__isnull": True}, []),
    ({"owner__contains": "a"}, []),
    ({"a b": 1}, [2]),
    ({"it's": "x"}, []),
    ({"100%s": "x"}, []),
    ({}, [0, 1, 2, 3, 4]),
]


def _sqlite_matches(filter_: dict) -> list[int]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (id INTEGER, doc TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, json.dumps(d)) for i, d in enumerate(DOCS)])
    sql, params = sqlite_sql('"t"."doc"', filter_)
    rows = db.execute(f"SELECT id FROM t WHERE {sql.replace('%s', '?')} ORDER BY id", params)
    return [row[0] for row in rows]


def _postgres_matches(filter_: dict) -> list[int]:
    table = f"filters_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE {table} (id int, doc jsonb)")
        for i, doc in enumerate(DOCS):
            cursor.execute(f"INSERT INTO {table} VALUES (%s, %s::jsonb)", [i, json.dumps(doc)])
        sql, params = postgres_sql(f'"{table}"."doc"', filter_)
        cursor.execute(f"SELECT id FROM {table} WHERE {sql} ORDER BY id", params)
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize(("filter_", "expected"), CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_sqlite_selects_the_expected_rows(filter_, expected):
    assert _sqlite_matches(validate(filter_)) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(("filter_", "expected"), CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_postgres_selects_the_same_rows(filter_, expected):
    assert _postgres_matches(validate(filter_)) == expected


@pytest.mark.parametrize(
    ("filter_", "message"),
    [
        ([], "must be a JSON object"),
        ({"$or": [{"a": 1}]}, "$or takes a list of at least two filters"),
        ({"$or": {"a": 1}}, "$or takes a list of at least two filters"),
        ({"$and": [{"a": 1}, {"b": 2}]}, "unknown operator '$and'"),
        ({"a": {"$regex": "x"}}, "'a' takes one of $eq, $contains"),
        ({"a": {"$eq": 1, "$contains": 2}}, "'a' takes one of $eq, $contains"),
        ({"a": "x\x00y"}, "NUL"),
        ({"a\x00": "x"}, "NUL"),
        ({"a": float("nan")}, "NaN"),
    ],
)
def test_a_filter_that_breaks_the_grammar_is_refused(filter_, message):
    with pytest.raises(InvalidFilter, match=message.replace("$", r"\$")):
        validate(filter_)


@pytest.mark.django_db
def test_json_filter_composes_with_a_queryset():
    from cronsvc.filters import json_filter
    from threads.models import Thread

    for doc in DOCS:
        Thread.objects.create(metadata=doc)
    qs = Thread.objects.filter(json_filter("metadata", {"tags": {"$contains": "b"}}))
    assert sorted(t.metadata["owner"] for t in qs) == ["alice", "bob"]
    assert qs.filter(json_filter("metadata", {"k__regex": "^(a+)+$"})).count() == 0
    assert Thread.objects.filter(json_filter("metadata", {"k__regex": "^(a+)+$"})).count() == 1
    assert Thread.objects.filter(json_filter("metadata", None)).count() == len(DOCS)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "filter_",
    [{"owner": "alice"}, {"tags": {"$contains": "b"}}, {"owner": {"$eq": "bob"}}],
    ids=["plain", "contains", "eq"],
)
def test_postgres_filters_can_use_the_gin_index(filter_):
    """The compiled filter is one the metadata GIN index (jsonb_path_ops) serves."""
    from crons.models import Cron
    from cronsvc.filters import json_filter

    qs = Cron.objects.filter(json_filter("metadata", filter_))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = qs.explain()
    assert "cron_metadata_gin" in plan
