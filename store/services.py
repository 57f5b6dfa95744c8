"""The store's operations as the `/store` endpoints use them: LangGraph's
namespace rules checked first (a 422 with the reason, nothing written), then
one call to the process's store (store.backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph.store.base import InvalidNamespaceError, Item

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
    store = get_store()
    if ttl is not None and store.ttl_config is None:
        # LangGraph's stores ignore a TTL they were not configured for; say so.
        raise Invalid('ttl needs "store": {"ttl": {...}} in langgraph.json')
    kwargs: dict[str, Any] = {"index": index}
    if ttl is not None:
        kwargs["ttl"] = ttl
    _store_call(store.put, namespace, key, value, **kwargs)


def item_get(*, namespace: Sequence[str], key: str, refresh_ttl: bool | None = None) -> Item | None:
    return _store_call(get_store().get, tuple(namespace), key, refresh_ttl=refresh_ttl)


def item_delete(*, namespace: Sequence[str], key: str) -> None:
    _store_call(get_store().delete, namespace_check(namespace), key)


def items_search(
    *,
    namespace_prefix: Sequence[str],
    filter: dict | None = None,
    limit: int = 10,
    offset: int = 0,
    query: str | None = None,
    refresh_ttl: bool | None = None,
) -> list[Item]:
    if query:
        raise Invalid(
            "query (semantic search) needs a store index, which cronsvc does not support yet"
        )
    return _store_call(
        get_store().search,
        namespace_check(namespace_prefix, what="Namespace prefix"),
        filter=filter,
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
    return _store_call(
        get_store().list_namespaces,
        prefix=namespace_check(prefix, what="Prefix") if prefix else None,
        suffix=namespace_check(suffix, what="Suffix") if suffix else None,
        max_depth=max_depth,
        limit=limit,
        offset=offset,
    )
