"""Pages of a search: `offset`/`limit` from the body, the total in
`X-Pagination-Total` and the next offset in `X-Pagination-Next`, as the
LangGraph Server answers them."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response


def search_page(qs, data: dict, render: Callable, total: int | None = None) -> Response:
    """One page of a search (`offset`, `limit`, `select` from `data`), each row
    rendered by `render(row, select)`, with the pagination headers (`total`:
    the rows `qs` finds, when the caller knows it more cheaply than a count)."""
    offset, limit = data["offset"], data["limit"]
    return paginated(
        [render(row, data.get("select")) for row in page(qs, offset, limit)],
        total=qs.count() if total is None else total,
        offset=offset,
        limit=limit,
    )


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
