"""The one compiler of LangGraph filters on a JSON column (metadata, values).

Every search and count (assistants, threads, crons) and, with custom auth, every
authorization filter goes through `json_filter`. The grammar is LangGraph's:

- ``{"key": value}`` — the key's value contains `value` the way PostgreSQL's
  ``@>`` does (a scalar equals; an object contains each of its keys; a list
  contains each of its elements). Several keys are ANDed.
- ``{"key": {"$eq": value}}`` — the key's value equals `value` exactly.
- ``{"key": {"$contains": x}}`` — the key's value is a list holding the scalar
  `x`, or holding every element of the list `x`.
- ``{"$or": [group, group, …]}`` — at least two groups (each a filter), any of
  which matches.

Keys are JSON keys taken literally — ``"a__regex"`` is the key ``a__regex`` —
never Django lookups. The same filter means the same on PostgreSQL (``@>`` on
the column, so a GIN index serves it) and on SQLite (compiled here with
``json_type``/``json_extract``/``json_each``). A filter that breaks the grammar
raises `InvalidFilter` (a 422).

The SQL builders take the column's SQL and return ``(sql, params)``; they
import nothing from Django, so they are tested on both databases directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db.models import BooleanField, Expression, F, Q

OPERATORS = ("$eq", "$contains")
MAX_DEPTH = 32


class InvalidFilter(ValueError):
    """A filter that breaks the grammar; the message says how."""


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidFilter(f"{where}: strings may not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, where, depth + 1)
            _check_value(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, where, depth + 1)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidFilter(f"{where}: NaN and Infinity are not JSON")
    elif value is not None and not isinstance(value, bool | int):
        raise InvalidFilter(f"{where}: {type(value).__name__} is not a JSON value")


def _is_operator(value: Any) -> bool:
    return isinstance(value, dict) and len(value) > 0 and all(k.startswith("$") for k in value)


def validate(filter_: Any, what: str = "filter") -> dict[str, Any]:
    """`filter_` checked against the grammar; InvalidFilter otherwise."""
    if not isinstance(filter_, dict):
        raise InvalidFilter(f"{what} must be a JSON object")
    for key, value in filter_.items():
        if not isinstance(key, str):
            raise InvalidFilter(f"{what}: keys must be strings")
        _check_value(key, what)
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise InvalidFilter(f"{what}: $or takes a list of at least two filters")
            for group in value:
                validate(group, what)
        elif key.startswith("$"):
            raise InvalidFilter(f"{what}: unknown operator {key!r} (use $or at the top level)")
        elif _is_operator(value):
            if len(value) != 1 or next(iter(value)) not in OPERATORS:
                raise InvalidFilter(
                    f"{what}: {key!r} takes one of {', '.join(OPERATORS)}, got {sorted(value)}"
                )
            _check_value(next(iter(value.values())), f"{what}.{key}")
        else:
            _check_value(value, f"{what}.{key}")
    return filter_


# --------------------------------------------------------------------------
# PostgreSQL: @> on the column (a GIN index with jsonb_path_ops serves it)
# --------------------------------------------------------------------------


def postgres_sql(column: str, filter_: dict[str, Any]) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    plain = {}
    for key, value in filter_.items():
        if key == "$or":
            groups = [postgres_sql(column, group) for group in value]
            parts.append("(" + " OR ".join(sql for sql, _ in groups) + ")")
            for _, group_params in groups:
                params += group_params
        elif _is_operator(value):
            op, operand = next(iter(value.items()))
            if op == "$eq":
                # The containment lets the index narrow the rows; the equality decides.
                parts.append(f"({column} @> %s::jsonb AND {column} -> %s = %s::jsonb)")
                params += [json.dumps({key: operand}), key, json.dumps(operand)]
            else:  # $contains
                elements = operand if isinstance(operand, list) else [operand]
                parts.append(f"{column} @> %s::jsonb")
                params.append(json.dumps({key: elements}))
        else:
            plain[key] = value
    if plain:
        parts.insert(0, f"{column} @> %s::jsonb")
        params.insert(0, json.dumps(plain))
    return (" AND ".join(parts) or "TRUE"), params


# --------------------------------------------------------------------------
# SQLite: the same meaning with json_type / json_extract / json_each.
# JSON paths are parameters too, so no key ever becomes SQL text.
# --------------------------------------------------------------------------

_SQLITE_SCALAR_TYPES = {True: "true", False: "false", None: "null"}


def _path(parent: str, key: str) -> str:
    return f"{parent}.{json.dumps(key)}"


def _sqlite_equals_scalar(
    type_sql: str, type_params: list[Any], value_sql: str, value_params: list[Any], value: Any
) -> tuple[str, list[Any]]:
    if value is None or isinstance(value, bool):
        return f"{type_sql} = %s", [*type_params, _SQLITE_SCALAR_TYPES[value]]
    kind = "('integer', 'real')" if isinstance(value, int | float) else "('text')"
    return (
        f"({type_sql} IN {kind} AND {value_sql} = %s)",
        [*type_params, *value_params, value],
    )


def _sqlite_contains(doc: str, path: str, value: Any, depth: int = 0) -> tuple[str, list[Any]]:
    """SQL true when the JSON at `path` of the JSON text `doc` contains `value` (as @> does)."""
    type_sql = f"json_type({doc}, %s)"
    if isinstance(value, dict | list):
        kind = "object" if isinstance(value, dict) else "array"
        parts, params = [f"{type_sql} = '{kind}'"], [path]
        items = value.items() if isinstance(value, dict) else ((None, item) for item in value)
        for key, item in items:
            if key is None:
                sql, item_params = _sqlite_element(doc, path, item, depth)
            else:
                sql, item_params = _sqlite_contains(doc, _path(path, key), item, depth)
            parts.append(sql)
            params += item_params
        return "(" + " AND ".join(parts) + ")", params
    return _sqlite_equals_scalar(type_sql, [path], f"json_extract({doc}, %s)", [path], value)


def _sqlite_element(doc: str, path: str, item: Any, depth: int) -> tuple[str, list[Any]]:
    """SQL true when the array at `path` has an element that contains `item`
    (each nesting level gets an alias of its own)."""
    je = f"je{depth}"
    if isinstance(item, dict | list):
        inner, inner_params = _sqlite_contains(f"{je}.value", "$", item, depth + 1)
        cond = f"{je}.type IN ('object', 'array') AND {inner}"
    else:
        cond, inner_params = _sqlite_equals_scalar(f"{je}.type", [], f"{je}.value", [], item)
    return (
        f"EXISTS (SELECT 1 FROM json_each({doc}, %s) AS {je} WHERE {cond})",
        [path, *inner_params],
    )


def _sqlite_contained_in(column: str, path: str, operand: Any) -> tuple[str, list[Any]]:
    """The other half of $eq on SQLite: the stored value has no key (object) or
    no more elements (array) than `operand`; for scalars the first half decided."""
    if isinstance(operand, dict):
        return (
            (
                f"NOT EXISTS (SELECT 1 FROM json_each({column}, %s) AS je "
                "WHERE je.key NOT IN (SELECT value FROM json_each(%s)))"
            ),
            [path, json.dumps(list(operand))],
        )
    if isinstance(operand, list):
        return f"json_array_length({column}, %s) = %s", [path, len(operand)]
    return "1", []


def sqlite_sql(column: str, filter_: dict[str, Any]) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for key, value in filter_.items():
        if key == "$or":
            groups = [sqlite_sql(column, group) for group in value]
            sql = "(" + " OR ".join(group_sql for group_sql, _ in groups) + ")"
            item_params = [p for _, group_params in groups for p in group_params]
        elif _is_operator(value):
            op, operand = next(iter(value.items()))
            path = _path("$", key)
            if op == "$eq":
                there, p1 = _sqlite_contains(column, path, operand)
                back, p2 = _sqlite_contained_in(column, path, operand)
                sql, item_params = f"({there} AND {back})", p1 + p2
            else:  # $contains
                elements = operand if isinstance(operand, list) else [operand]
                sql, item_params = _sqlite_contains(column, path, elements)
        else:
            sql, item_params = _sqlite_contains(column, _path("$", key), value)
        parts.append(sql)
        params += item_params
    return (" AND ".join(parts) or "1"), params


# --------------------------------------------------------------------------
# Django
# --------------------------------------------------------------------------


def _column_sql(compiler: Any, column: Any) -> str:
    column_sql, column_params = compiler.compile(column)
    if column_params:  # pragma: no cover - a column reference has none
        raise ValueError("JSON filters apply to a column")
    return str(column_sql)


def vendor_sql(connection: Any, column_sql: str, filter_: dict[str, Any]) -> tuple[str, list[Any]]:
    """`filter_` on the JSON column `column_sql`, in the connection's SQL."""
    if connection.vendor == "postgresql":
        return postgres_sql(column_sql, filter_)
    if connection.vendor == "sqlite":
        return sqlite_sql(column_sql, filter_)
    raise NotImplementedError(f"JSON filters on {connection.vendor}")  # pragma: no cover


class JsonFilter(Expression):
    """A boolean expression: `field` matches `filter_` (see the module docstring)."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, field: str, filter_: dict[str, Any]) -> None:
        super().__init__(output_field=BooleanField())
        self.column = F(field)
        self.filter = filter_

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        sql, params = vendor_sql(connection, _column_sql(compiler, self.column), self.filter)
        return f"({sql})", params


class NullOrRelatedJsonFilter(Expression):
    """A boolean expression: the nullable foreign key `field` is null, or the
    row of `model` it points to has a JSON `json_field` matching `filter_`.

    The same rows as `Q(field__isnull=True) | Q(field__in=<model's matching
    pks>)`, written as one subquery by hand: building and compiling a second
    queryset for it cost more than the query itself (custom auth's thread
    filter on every cron search and count)."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, field: str, model: Any, filter_: dict[str, Any], json_field: str) -> None:
        super().__init__(output_field=BooleanField())
        self.column = F(field)
        self.model = model
        self.filter = filter_
        self.json_field = json_field

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        column_sql = _column_sql(compiler, self.column)
        quote = connection.ops.quote_name
        meta = self.model._meta
        alias = quote("cronsvc_related")
        inner = f"{alias}.{quote(meta.get_field(self.json_field).column)}"
        sql, params = vendor_sql(connection, inner, self.filter)
        subquery = (
            f"SELECT {alias}.{quote(meta.pk.column)} FROM {quote(meta.db_table)} {alias} "
            f"WHERE {sql}"
        )
        return f"({column_sql} IS NULL OR {column_sql} IN ({subquery}))", params


def null_or_related_json_filter(
    field: str, model: Any, filter_: dict[str, Any] | None, json_field: str = "metadata"
) -> Q:
    """A Q: `field` is null or points to a `model` row whose `json_field`
    matches `filter_` (every row when the filter is empty)."""
    if not filter_:
        return Q()
    validate(filter_, "auth filter")
    return Q(NullOrRelatedJsonFilter(field, model, filter_, json_field))


def json_filter(field: str, filter_: dict[str, Any] | None, what: str = "metadata") -> Q:
    """A Q matching rows whose JSON `field` matches `filter_` (everything when empty)."""
    if not filter_:
        return Q()
    validate(filter_, what)
    return Q(JsonFilter(field, filter_))
