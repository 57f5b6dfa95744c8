"""The store's operations as the `/store` endpoints use them: LangGraph's
namespace rules checked first (a 422 with the reason, nothing written), then
one call to the process's store (store.backend).

With custom auth, each operation first runs the `store.<action>` handler
(put, get, search, delete, list_namespaces) as the current user; the
namespace it leaves in `value["namespace"]` is the one used (the recipe
prefixes the user's identity), and False refuses with a 403."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.store.base import InvalidNamespaceError, Item

from cronsvc import custom_auth
from cronsvc.errors import Invalid
from store.backend import get_store


def namespace_check(namespace: Sequence[str], *, what: str = "Namespace") -> tuple[str, ...]:
    """A namespace as a tuple; labels must be non-empty and contain no period
    (the SDK joins them with "." in query strings)."""
    for label in namespace:
        if not label or "." in label:
            raise Invalid(
                f"{what} labels cannot be empty or contain periods. Received: {list(namespace)}"
            )
    return tuple(namespace)


def namespace_parse(dotted: str | None) -> tuple[str, ...]:
    """A namespace from a query string ("a.b.c"); empty or absent is the root."""
    if not dotted:
        return ()
    return namespace_check(dotted.split("."))


def _authorized(action: str, value: dict[str, Any]) -> dict[str, Any]:
    """`value` as the store handler for `action` leaves it (custom auth)."""
    custom_auth.authorize("store", action, value)
    if value.get("namespace") is not None:
        value["namespace"] = tuple(value["namespace"])
    return value


def _store_call(fn, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except InvalidNamespaceError as exc:
        raise Invalid(str(exc)) from exc


def item_put(
    *,
    namespace: Sequence[str],
    key: str,
    value: dict,
    index: Any = None,
    ttl: float | None = None,
) -> None:
    namespace = namespace_check(namespace)
    if not namespace:
        raise Invalid("Namespace cannot be empty.")
    asked = _authorized("put", {"namespace": namespace, "key": key, "value": value, "index": index})
    namespace, key, value = namespace_check(asked["namespace"]), asked["key"], asked["value"]
    store = get_store()
    if ttl is not None and store.ttl_config is None:
        # LangGraph's stores ignore a TTL they were not configured for; say so.
        raise Invalid('ttl needs "store": {"ttl": {...}} in langgraph.json')
    kwargs: dict[str, Any] = {"index": index}
    if ttl is not None:
        kwargs["ttl"] = ttl
    _store_call(store.put, namespace, key, value, **kwargs)


def item_get(*, namespace: Sequence[str], key: str, refresh_ttl: bool | None = None) -> Item | None:
    asked = _authorized("get", {"namespace": tuple(namespace), "key": key})
    return _store_call(get_store().get, asked["namespace"], asked["key"], refresh_ttl=refresh_ttl)


def item_delete(*, namespace: Sequence[str], key: str) -> None:
    asked = _authorized("delete", {"namespace": namespace_check(namespace), "key": key})
    _store_call(get_store().delete, namespace_check(asked["namespace"]), asked["key"])


def items_search(
    *,
    namespace_prefix: Sequence[str],
    filter: dict | None = None,
    limit: int = 10,
    offset: int = 0,
    query: str | None = None,
    refresh_ttl: bool | None = None,
) -> list[Item]:
    """Items under `namespace_prefix`, most recently updated first; with a
    `query` and a store index (langgraph.json "store.index"), ranked by
    similarity instead, each with its `score`. Without an index the query is
    ignored, as on the LangGraph Server (LangGraph's stores list then)."""
    asked = _authorized(
        "search",
        {
            "namespace": namespace_check(namespace_prefix, what="Namespace prefix"),
            "filter": filter,
            "limit": limit,
            "offset": offset,
            "query": query,
        },
    )
    return _store_call(
        get_store().search,
        namespace_check(asked["namespace"], what="Namespace prefix"),
        query=asked.get("query") or None,
        filter=asked.get("filter"),
        limit=limit,
        offset=offset,
        refresh_ttl=refresh_ttl,
    )


def namespaces_list(
    *,
    prefix: Sequence[str] | None = None,
    suffix: Sequence[str] | None = None,
    max_depth: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[tuple[str, ...]]:
    asked = _authorized(
        "list_namespaces",
        {
            "namespace": tuple(prefix) if prefix else None,
            "suffix": tuple(suffix) if suffix else None,
            "max_depth": max_depth,
            "limit": limit,
            "offset": offset,
        },
    )
    prefix = asked.get("namespace")
    return _store_call(
        get_store().list_namespaces,
        prefix=namespace_check(prefix, what="Prefix") if prefix else None,
        suffix=namespace_check(suffix, what="Suffix") if suffix else None,
        max_depth=max_depth,
        limit=limit,
        offset=offset,
    )
