"""The SQL of the API's hot reads, compiled once per shape of request.

Django compiles a queryset to SQL on every execution and works out again how
to turn its rows into model instances: for a page of 10 crons ~0.2 ms at
offset 0 and ~0.4 ms past it (a subquery), for a count ~0.1 ms, several times
what SQLite or PostgreSQL take to answer them at 10,000 rows. A search's SQL
is a function of its inputs alone (filters, order, `select`, offset, limit),
so a view keys the queryset by those inputs (`key_of`) and this module keeps,
per key, the compiled SQL and its parameters with how its rows are
converted (the converters Django's ModelIterable would apply), or that it
finds nothing (an `EmptyResultSet`). Rows come back as Records, their fields
as attributes: what the views' wire writers read, without a model instance
each. A dashboard or SDK that asks the same search or count again skips the
compilation.

Only for querysets whose SQL depends on nothing but the key: a view does not
key a request with a custom-auth user (whose filter is part of the SQL) and
keeps to inputs resolved without the database. At most CACHE_SIZE shapes per
process (the oldest dropped first).

`first` does the same for the lookups of one row by its ids (a run, a
thread, an assistant: every run start, get, join and wait): their SQL is
compiled once per lookup with stand-in ids, which each call replaces with
its own, and the row comes back as a model instance."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import connection, connections
from django.db.models import Model, QuerySet, UUIDField
from django.db.transaction import TransactionManagementError

from cronsvc import custom_auth

CACHE_SIZE = 1024


@dataclass(frozen=True)
class _Rows:
    db: str
    sql: str
    params: tuple
    names: tuple[str, ...]  # the attnames the row's columns fill, in order
    converters: tuple  # (position, converters, expression), as Django's compiler gives them
    model: type[Model]


@dataclass(frozen=True)
class _Count:
    db: str
    sql: str
    params: tuple


_EMPTY = object()
_cache: OrderedDict[Hashable, Any] = OrderedDict()
_lock = threading.Lock()


def key_of(name: str, inputs: dict) -> str | None:
    """A key for the queryset `name` builds from `inputs` (JSON values, UUIDs);
    None (not to be kept) with a custom-auth user, whose filter is in the SQL."""
    if custom_auth.current_user() is not None:
        return None
    return name + json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))


def rows(key: Hashable | None, build: Callable[[], QuerySet]) -> list[Any]:
    """The rows `build()` finds, compiled once per `key`, as Records (None:
    each time, through the ORM, as model instances)."""
    if key is None:
        return list(build())
    entry = _compiled(("rows", key), lambda: _rows_of(build()))
    if entry is _EMPTY:
        return []
    with connections[entry.db].cursor() as cursor:
        cursor.execute(entry.sql, entry.params)
        return _records(entry, cursor.fetchall())


def rows_and_scalar(
    key: Hashable | None, build: Callable[[], QuerySet], scalar: tuple[str, Sequence]
) -> tuple[list[Any], Any]:
    """`rows(key, build)`, and the value of `scalar` (a statement and its
    parameters that read one row of one column: a total) sent before it in
    the same round trip on PostgreSQL (its client-side binding takes several
    statements in one execute); on the same connection either way."""
    scalar_sql, scalar_params = scalar
    entry = None if key is None else _compiled(("rows", key), lambda: _rows_of(build()))
    if entry is None or entry is _EMPTY or connections[entry.db].vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(scalar_sql, scalar_params)
            (value,) = cursor.fetchone()
        return ([] if entry is _EMPTY else rows(key, build)), value
    with connections[entry.db].cursor() as cursor:
        cursor.execute(f"{scalar_sql}; {entry.sql}", (*scalar_params, *entry.params))
        (value,) = cursor.fetchone()
        cursor.nextset()
        return _records(entry, cursor.fetchall()), value


class Record:
    """A row of a keyed read: its fields (the columns the queryset loads, by
    attname, converted as the ORM converts them) as attributes. What the
    views' wire writers read, without building a model instance per row
    (Model.__init__ and the deferred fields: a third of a search page's
    time in the server); not a model, nothing to save."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__ = fields


def _records(entry: _Rows, fetched: list) -> list[Record]:
    wrapper = connections[entry.db]
    return [
        Record(dict(zip(entry.names, _converted(entry, wrapper, row), strict=True)))
        for row in fetched
    ]


def _converted(entry: _Rows, wrapper: Any, row: Sequence) -> Sequence:
    """A fetched row's values as the ORM converts them."""
    if not entry.converters:
        return row
    row = list(row)
    for position, converters, expression in entry.converters:
        value = row[position]
        for converter in converters:
            value = converter(value, expression, wrapper)
        row[position] = value
    return row


def count(key: Hashable | None, build: Callable[[], QuerySet]) -> int:
    """How many rows `build()` finds, compiled once per `key` (None: each time)."""
    if key is None:
        return build().count()
    entry = _compiled(("count", key), lambda: _count_of(build()))
    if entry is _EMPTY:
        return 0
    with connections[entry.db].cursor() as cursor:
        cursor.execute(entry.sql, entry.params)
        (total,) = cursor.fetchone()
    return int(total)


M = TypeVar("M", bound=Model)


def first(name: str, build: Callable[..., QuerySet[M]], *ids: uuid.UUID | str) -> M | None:
    """`build(*ids).first()`, its SQL compiled once per `name` (with a
    custom-auth user, whose filter is in the SQL: through the ORM each time).
    `ids` are UUIDs or their text (primary or foreign keys), the only
    parameters of the statement that vary: `build` must make the same SQL
    for any of them."""
    if custom_auth.current_user() is not None:
        return build(*ids).first()
    entry = _compiled(("first", name), lambda: _first_of(build, len(ids)))
    if entry is _EMPTY:
        return None
    rows, slots, locks = entry
    wrapper = connections[rows.db]
    if locks and wrapper.get_autocommit():  # as the ORM checks it
        raise TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )
    params = list(rows.params)
    for position, index in slots:
        params[position] = _UUID.get_db_prep_value(ids[index], wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute(rows.sql, params)
        fetched = cursor.fetchall()
    if not fetched:
        return None
    return rows.model.from_db(rows.db, rows.names, _converted(rows, wrapper, fetched[0]))


_UUID = UUIDField()


def _first_of(build: Callable[..., QuerySet], count: int) -> tuple[_Rows, tuple, bool] | object:
    """The compiled `first()` of `build`, with where each id goes among its
    parameters (found by compiling it with stand-in ids) and whether it locks
    the row (select_for_update)."""
    stand_ins = [uuid.uuid4() for _ in range(count)]
    qs = build(*stand_ins)
    if not qs.ordered:
        qs = qs.order_by("pk")
    rows = _rows_of(qs[:1])
    if rows is _EMPTY:
        return _EMPTY
    wrapper = connections[rows.db]
    prepared = [_UUID.get_db_prep_value(value, wrapper) for value in stand_ins]
    slots = tuple(
        (position, prepared.index(param))
        for position, param in enumerate(rows.params)
        if param in prepared
    )
    if sorted({index for _position, index in slots}) != list(range(count)):
        raise ValueError(f"cronsvc.statements.first: not every id is a parameter of {qs.query}")
    return rows, slots, bool(qs.query.select_for_update)


def _compiled(key: Hashable, compile_: Callable[[], Any]) -> Any:
    with _lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
            return entry
    entry = compile_()  # outside the lock: it may read the database (it does not here)
    with _lock:
        _cache[key] = entry
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return entry


def _rows_of(qs: QuerySet) -> _Rows | object:
    """What ModelIterable works out for `qs` on each execution, once. Only a
    plain model queryset (no select_related, annotations or extra), which is
    what the views key."""
    query = qs.query
    if query.select_related or query.annotations or query.extra:
        raise ValueError("cronsvc.statements keys plain model querysets only")
    compiler = query.get_compiler(using=qs.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:
        return _EMPTY
    select = [column for column, _sql, _alias in compiler.select]
    converters = tuple(
        (position, tuple(convs), expression)
        for position, (convs, expression) in compiler.get_converters(select).items()
    )
    return _Rows(
        db=qs.db,
        sql=sql,
        params=tuple(params),
        names=tuple(column.target.attname for column in select),
        converters=converters,
        model=qs.model,
    )


def _count_of(qs: QuerySet) -> _Count | object:
    keys = qs.order_by().values("pk")
    try:
        sql, params = keys.query.sql_with_params()
    except EmptyResultSet:
        return _EMPTY
    # A derived table both SQLite and PostgreSQL flatten into a plain COUNT.
    return _Count(
        db=qs.db,
        sql=f"SELECT COUNT(*) FROM ({sql}) cronsvc_counted",  # noqa: S608 - Django's compiled SQL
        params=tuple(params),
    )
