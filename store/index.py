"""The store's semantic index (`"store": {"index": {...}}` in langgraph.json),
as the LangGraph platform configures it:

    "store": {"index": {"dims": 1536, "embed": "openai:text-embedding-3-small",
                        "fields": ["text"]}}

`dims`: the embedding size; `embed`: a LangChain `init_embeddings` string
("provider:model", needs the `langchain` package and the provider's, neither
installed with cronsvc), or a function of a list of texts returning vectors, or
a LangChain `Embeddings` object, named like a graph: "./embeddings.py:embed"
(relative to langgraph.json) or "package.module:embed"; `fields`: the JSON
paths embedded (default the whole value, ["$"]).

LangGraph's stores do the rest (`index=` to PostgresStore / SqliteStore): put
embeds, `search(query=...)` ranks by similarity. They need a vector extension,
checked here with a message saying what is missing: pgvector on PostgreSQL,
sqlite-vec loaded into Python's sqlite3 on SQLite.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from langchain_core.embeddings import Embeddings

from cronsvc.pyfiles import import_file

INDEX_KEYS = ("dims", "embed", "fields")

PGVECTOR_HELP = (
    "Use a PostgreSQL that has pgvector (https://github.com/pgvector/pgvector): "
    "the image pgvector/pgvector:pg17 (docker-compose.yml uses it), or the "
    "postgresql-17-pgvector package from the PostgreSQL apt repository; then "
    "`python manage.py migrate` creates the extension (or a superuser runs "
    '`CREATE EXTENSION vector` in this database). Or remove "index" from '
    '"store" in langgraph.json.'
)


class StoreConfigError(ImproperlyConfigured, ValueError):
    """`langgraph.json`'s "store" cannot be used; the message says why."""


class StoreSetupError(CommandError, StoreConfigError):
    """Raised by `migrate` (the store's vector setup): manage.py prints the
    message alone, without a traceback."""


def parse_index(index: Any) -> dict[str, Any]:
    """`store.index` checked (keys, dims, fields, embed a string); embed not loaded."""
    if not isinstance(index, dict):
        raise StoreConfigError(
            '"store.index" in langgraph.json must be an object: '
            '{"dims": 1536, "embed": "./embeddings.py:embed", "fields": ["$"]}'
        )
    unknown = sorted(set(index) - set(INDEX_KEYS))
    if unknown:
        raise StoreConfigError(f'"store.index" takes only {list(INDEX_KEYS)}; got {unknown}')
    dims = index.get("dims")
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise StoreConfigError(
            '"store.index.dims" must be a positive integer, the size of the vectors '
            f"the embedding returns (e.g. 1536 for openai:text-embedding-3-small); got {dims!r}"
        )
    embed = index.get("embed")
    if not isinstance(embed, str) or ":" not in embed:
        raise StoreConfigError(
            '"store.index.embed" must be a string: "./embeddings.py:embed" (a function '
            'or Embeddings object, relative to langgraph.json), "package.module:embed", or '
            f'a LangChain provider string like "openai:text-embedding-3-small"; got {embed!r}'
        )
    fields = index.get("fields")
    if fields is not None and (
        not isinstance(fields, list)
        or not fields
        or not all(isinstance(f, str) and f for f in fields)
    ):
        raise StoreConfigError(
            '"store.index.fields" must be a non-empty list of JSON paths '
            f'(e.g. ["$"], ["text", "meta.title"]); got {fields!r}'
        )
    out: dict[str, Any] = {"dims": dims, "embed": embed}
    if fields is not None:
        out["fields"] = list(fields)
    return out


class AsyncEmbeddings(Embeddings):
    """An async embedding function usable from sync code too: cronsvc's store
    calls are sync (the API's views, the store's batch), where LangGraph's own
    wrapper refuses an async-only function. A sync call runs it on a loop of
    its own (in a helper thread when this one already runs a loop)."""

    def __init__(self, afunc: Callable[[Sequence[str]], Awaitable[list[list[float]]]]) -> None:
        self.afunc = afunc

    def _run(self, texts: list[str]) -> list[list[float]]:
        async def call() -> list[list[float]]:
            return await self.afunc(texts)

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(call())
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, call()).result()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._run(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._run([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.afunc(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.afunc([text]))[0]


def _import_file(path: Path) -> Any:
    try:
        return import_file(path, "cronsvc_embed")
    except ImportError as exc:
        raise StoreConfigError(f'"store.index.embed": {exc}') from exc


def _init_embeddings(spec: str) -> Embeddings:
    try:
        from langchain.embeddings import init_embeddings  # noqa: PLC0415 - optional package
    except ImportError:
        raise StoreConfigError(
            f'"store.index.embed" {spec!r} is a LangChain provider string, which needs the '
            "langchain package (>=0.3.9) and the provider's (e.g. langchain-openai); "
            "cronsvc does not install them: pip install langchain langchain-openai, or name "
            'a function instead ("./embeddings.py:embed", relative to langgraph.json)'
        ) from None
    try:
        return init_embeddings(spec)  # type: ignore[no-any-return]
    except Exception as exc:
        raise StoreConfigError(f'"store.index.embed" {spec!r}: {exc}') from exc


def resolve_embed(spec: str, base: Path) -> Embeddings:
    """The Embeddings `spec` names; `base` is langgraph.json's directory.

    "./file.py:attr" (or any "….py:attr") is a file relative to `base`;
    "package.module:attr" (a dotted module) is imported with `base` on the path;
    anything else ("openai:text-embedding-3-small") goes to LangChain's
    `init_embeddings`."""
    from langgraph.store.base import ensure_embeddings  # noqa: PLC0415 - with the store

    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = (base / target).resolve()
        if not path.is_file():
            raise StoreConfigError(f'"store.index.embed" {spec!r}: {path} does not exist')
        module = _import_file(path)
    elif "/" in target or "\\" in target:
        raise StoreConfigError(f'"store.index.embed" {spec!r}: a file path must end in .py')
    elif "." in target:
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise StoreConfigError(f'"store.index.embed" {spec!r}: {exc}') from exc
    else:
        return _init_embeddings(spec)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise StoreConfigError(f'"store.index.embed" {spec!r}: {target} has no {attr!r}') from None
    if isinstance(obj, Embeddings):
        return obj
    if isinstance(obj, type) or not callable(obj):
        kind = "a class" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise StoreConfigError(
            f'"store.index.embed" {spec!r} is {kind}: name a function '
            "(a list of texts -> a list of vectors) or an Embeddings instance"
        )
    if inspect.iscoroutinefunction(obj):
        return AsyncEmbeddings(obj)
    return ensure_embeddings(obj)


def sqlite_vec_problem() -> str | None:
    """Why this Python cannot use sqlite-vec (None when it can): LangGraph's
    SqliteStore loads it into each connection for an index."""
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        return (
            '"store.index" on SQLite needs sqlite-vec loaded into sqlite3, and this Python\'s '
            "sqlite3 cannot load extensions (built without them, as some distributions and "
            "pyenv builds are; sqlite3.Connection has no enable_load_extension). Use a Python "
            "whose sqlite3 loads extensions (python.org or Debian/Ubuntu builds, or pyenv with "
            'PYTHON_CONFIGURE_OPTS="--enable-loadable-sqlite-extensions"), or PostgreSQL with '
            'pgvector (DATABASE_URL), or remove "index" from "store" in langgraph.json.'
        )
    try:
        import sqlite_vec  # noqa: PLC0415 - optional until an index is configured
    except ImportError:
        return (
            '"store.index" on SQLite needs the sqlite-vec package (pip install sqlite-vec; '
            "langgraph-checkpoint-sqlite requires it), which is not installed."
        )
    conn = sqlite3.connect(":memory:")
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.execute("SELECT vec_version()")
    except (sqlite3.Error, AttributeError, OSError) as exc:
        return (
            f'"store.index" on SQLite: sqlite-vec does not load into this sqlite3 ({exc}). '
            "Check that the sqlite-vec wheel matches this platform, or use PostgreSQL "
            'with pgvector, or remove "index" from "store" in langgraph.json.'
        )
    finally:
        conn.close()
    return None


def pgvector_problem(conn: Any) -> str | None:
    """Why the PostgreSQL behind `conn` (psycopg, autocommit) cannot give the
    store's index pgvector (None when the extension is there or was created)."""
    import psycopg  # noqa: PLC0415 - PostgreSQL only

    try:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            return None
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            '"store.index" (semantic search) needs the pgvector extension, and this PostgreSQL '
            f"cannot create it: {reason}. {PGVECTOR_HELP}"
        )
    return None
