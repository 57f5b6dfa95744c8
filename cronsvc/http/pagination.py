"""Pages of a search: `offset`/`limit` from the body, the total in
`X-Pagination-Total` and the next offset in `X-Pagination-Next`, as the
LangGraph Server answers them."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from django.core.exceptions import EmptyResultSet, FieldDoesNotExist
from django.db import connection, connections
from django.db.models import BigIntegerField, QuerySet
from django.db.models.expressions import RawSQL
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from cronsvc import statements


def search_page(
    qs,
    data: dict,
    render: Callable,
    *,
    total_sql: tuple[str, list] | None = None,
    one_statement: bool = False,
    key: str | None = None,
) -> Response:
    """One page of a search (`offset`, `limit`, `select` from `data`), each row
    rendered by `render(row, select)`, with the pagination headers (the rows
    `qs` finds: read by `total_sql`, when the caller has a statement cheaper
    than a count, sent with the page's; else, with `one_statement`, counted
    by the page's own query: see `counted_page`; else a COUNT). `qs` is the queryset, or with `key` (from
    `cronsvc.statements.key_of`) a function that builds it: the page's and the
    count's SQL are then compiled once per key and offset, and `render` is
    given statements.Records (the row's fields as attributes)."""
    offset, limit = data["offset"], data["limit"]
    build = qs if callable(qs) else (lambda: qs)
    page_key = None if key is None else f"{key}[{offset}:{limit}]"
    if total_sql is not None:
        rows, total = statements.rows_and_scalar(
            page_key, lambda: page(build(), offset, limit), total_sql
        )
    elif one_statement and connection.vendor == "postgresql":
        rows, total = counted_page(build(), offset, limit)
    else:
        rows = statements.rows(page_key, lambda: page(build(), offset, limit))
        total = statements.count(key, build)
    return paginated(
        [render(row, data.get("select")) for row in rows],
        total=total,
        offset=offset,
        limit=limit,
    )


def counted_page(qs: QuerySet, offset: int, limit: int) -> tuple[list, int]:
    """The rows `offset` to `offset + limit` of `qs` and how many rows `qs`
    finds, on PostgreSQL in one statement:

        WITH cronsvc_keys AS MATERIALIZED (SELECT pk, <order columns> FROM t WHERE …),
             cronsvc_page AS (SELECT pk FROM cronsvc_keys ORDER BY … LIMIT … OFFSET …)
        SELECT <columns>, (SELECT count(*) FROM cronsvc_keys) FROM t
        WHERE pk IN (SELECT pk FROM cronsvc_page) ORDER BY …

    The filter is applied once, by whatever index serves it (the metadata GIN
    index for a JSON filter), to the keys and order columns alone; the count
    and the page's top-N sort read those, and only the page's rows are read
    in full. Where a filter keeps few rows (a custom-auth owner's crons) that
    is one bitmap scan instead of a COUNT plus a page that walks the order's
    index past every row the filter drops, and one statement to compile,
    send and plan instead of two. An empty page past offset 0 is counted
    apart. Otherwise (SQLite, an order that is not plain columns, a
    queryset that is sliced, distinct or annotated) the page and a COUNT."""
    keys = _keys_sql(qs)
    if keys is None:
        return list(page(qs, offset, limit)), qs.count()
    try:
        keys_sql, keys_params = keys.query.sql_with_params()
    except EmptyResultSet:
        return [], 0
    names, defer = qs.query.deferred_loading
    page_sql, page_params = _page_sql(
        qs.model, qs.db, (frozenset(names), defer), tuple(qs.query.order_by)
    )
    rows = list(
        qs.model._base_manager.db_manager(qs.db).raw(
            f"WITH cronsvc_keys AS MATERIALIZED ({keys_sql}), {page_sql}",
            (*keys_params, limit, offset, *page_params),
        )
    )
    if rows:
        return rows, rows[0].cronsvc_total
    return rows, (qs.count() if offset else 0)


def _order_columns(model, order_by: tuple) -> list[tuple[str, bool]] | None:
    """`order_by` as (column, descending) pairs; None unless each item is a
    plain column of `model` (a field's name, an attname such as
    `assistant_id`, or `pk`; not a relation, whose order is its model's)."""
    meta = model._meta
    order = []
    for item in order_by:
        if not isinstance(item, str):
            return None
        name = item.removeprefix("-")
        try:
            field = meta.pk if name == "pk" else meta.get_field(name)
        except FieldDoesNotExist:
            return None
        if (name != "pk" and name != field.attname) or getattr(field, "column", None) is None:
            return None
        order.append((field.column, item.startswith("-")))
    return order


def _keys_sql(qs: QuerySet) -> QuerySet | None:
    """`qs`'s keys and order columns, as the query of `counted_page`'s
    cronsvc_keys; None when `counted_page` cannot take `qs`."""
    query = qs.query
    if (
        connections[qs.db].vendor != "postgresql"
        or not query.order_by
        or query.is_sliced
        or query.distinct
        or query.annotations
        or query.extra
        or query.select_related
        or query.combinator
        or _order_columns(qs.model, tuple(query.order_by)) is None
    ):
        return None
    meta = qs.model._meta
    names = [meta.pk.attname]
    for item in query.order_by:
        name = item.removeprefix("-")
        attname = meta.pk.attname if name == "pk" else meta.get_field(name).attname
        if attname not in names:
            names.append(attname)
    return qs.order_by().values_list(*names)


@lru_cache(maxsize=256)
def _page_sql(model, db: str, deferred_loading: tuple, order_by: tuple) -> tuple[str, tuple]:
    """What follows cronsvc_keys in `counted_page`'s statement: the page's
    keys and the page's rows with the total, for a model, the columns it
    loads and its order. The same for every request of that shape (the
    filter's values are all in cronsvc_keys), so compiled once."""
    order = _order_columns(model, order_by)
    assert order is not None  # noqa: S101 - _keys_sql checked it
    quote = connections[db].ops.quote_name
    pk = quote(model._meta.pk.column)
    outer = QuerySet(model=model, using=db)
    outer.query.deferred_loading = deferred_loading
    total = RawSQL("SELECT count(*) FROM cronsvc_keys", (), BigIntegerField())
    in_page = RawSQL(f"SELECT {pk} FROM cronsvc_page", ())  # noqa: S608, S611 - a quoted name
    outer = outer.annotate(cronsvc_total=total).filter(pk__in=in_page).order_by(*order_by)
    outer_sql, outer_params = outer.query.sql_with_params()
    keys_order = ", ".join(
        f"cronsvc_keys.{quote(column)} {'DESC' if desc else 'ASC'}" for column, desc in order
    )
    # Quoted names and Django's compiled SQL; every value is a parameter.
    sql = (
        f"cronsvc_page AS (SELECT {pk} FROM cronsvc_keys ORDER BY {keys_order} "  # noqa: S608
        f"LIMIT %s OFFSET %s) {outer_sql}"
    )
    return sql, tuple(outer_params)


def page(qs: QuerySet, offset: int, limit: int) -> QuerySet:
    """The rows `offset` to `offset + limit` of `qs`, in its order. Past the
    first page, the rows skipped are found by their keys alone (a subquery the
    database can answer from an index matching the order) and only the page's
    rows are read in full: `OFFSET` on the full rows would read, and for JSON
    columns decode, every skipped row."""
    if not offset:
        return qs[:limit]
    return qs.filter(pk__in=qs.values("pk")[offset : offset + limit])


def paginated(items: list, *, total: int, offset: int, limit: int) -> Response:
    response = Response(items)
    response["X-Pagination-Total"] = str(total)
    if offset + len(items) < total:
        response["X-Pagination-Next"] = str(offset + limit)
    return response


# The response headers of a search, for its @extend_schema(parameters=...).
PAGINATION_HEADERS = [
    OpenApiParameter(
        "X-Pagination-Total",
        int,
        OpenApiParameter.HEADER,
        description="rows matching",
        response=[200],
    ),
    OpenApiParameter(
        "X-Pagination-Next",
        int,
        OpenApiParameter.HEADER,
        description="the offset of the next page; absent on the last page",
        response=[200],
    ),
]

SELECTED = "With `select`, each item has only the selected fields, in that order."
