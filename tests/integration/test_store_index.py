"""The store's semantic index (`"store": {"index": {...}}` in langgraph.json):
its configuration, the startup messages when the vector extension is missing,
that nothing changes without it, and semantic search itself where the
extension exists (pgvector on PostgreSQL, sqlite-vec loadable by sqlite3 on
SQLite; skipped with the reason otherwise)."""

import asyncio
import json
import sqlite3
import sys
import uuid
from types import SimpleNamespace

import psycopg
import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from langchain_core.embeddings import Embeddings

from store import backend
from store import index as store_index
from store.index import StoreConfigError
from tests.store_embeddings import DIMS, WordCountEmbeddings

EMBED_PY = """
NOT_CALLABLE = 3

def embed(texts):
    return [[1.0, 0.0, 0.0] for _ in texts]

async def aembed(texts):
    return [[0.0, 1.0, 0.0] for _ in texts]
"""


@pytest.fixture
def configure(settings, tmp_path):
    """configure(store) writes a langgraph.json with that "store" and points
    cronsvc at it (caches cleared, the store reopened on next use)."""
    (tmp_path / "emb.py").write_text(EMBED_PY)

    def _configure(store):
        config = tmp_path / "langgraph.json"
        config.write_text(
            json.dumps({"graphs": {"agent": "./examples/agent.py:graph"}, "store": store})
        )
        settings.LANGGRAPH_CONFIG = config
        backend.store_config.cache_clear()
        backend.reset()
        return config

    yield _configure
    backend.store_config.cache_clear()
    backend.reset()


# --------------------------------------------------------------------------
# Configuration (runs everywhere)
# --------------------------------------------------------------------------


def test_an_embed_function_is_loaded_relative_to_langgraph_json(configure):
    configure({"index": {"dims": 3, "embed": "./emb.py:embed", "fields": ["text"]}})
    index = backend.index_config()
    assert index["dims"] == 3
    assert index["fields"] == ["text"]
    assert isinstance(index["embed"], Embeddings)
    assert index["embed"].embed_query("anything") == [1.0, 0.0, 0.0]


def test_an_async_embed_function_works_from_sync_and_async_code(configure):
    configure({"index": {"dims": 3, "embed": "./emb.py:aembed"}})
    embeddings = backend.index_config()["embed"]
    assert embeddings.embed_documents(["a", "b"]) == [[0.0, 1.0, 0.0]] * 2

    async def inside_a_loop():
        return embeddings.embed_query("a"), await embeddings.aembed_query("b")

    assert asyncio.run(inside_a_loop()) == ([0.0, 1.0, 0.0], [0.0, 1.0, 0.0])


def test_an_embeddings_object_or_function_by_module_path(configure):
    configure({"index": {"dims": DIMS, "embed": "tests.store_embeddings:embeddings"}})
    index = backend.index_config()
    assert isinstance(index["embed"], WordCountEmbeddings)
    assert "fields" not in index  # LangGraph's default: the whole value

    configure({"index": {"dims": DIMS, "embed": "tests.store_embeddings:embed"}})
    assert backend.index_config()["embed"].embed_query("a cat") == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ([], "must be an object"),
        ({"embed": "./emb.py:embed"}, "dims"),
        ({"dims": 0, "embed": "./emb.py:embed"}, "dims"),
        ({"dims": -3, "embed": "./emb.py:embed"}, "dims"),
        ({"dims": "3", "embed": "./emb.py:embed"}, "dims"),
        ({"dims": True, "embed": "./emb.py:embed"}, "dims"),
        ({"dims": 1.5, "embed": "./emb.py:embed"}, "dims"),
        ({"dims": 3}, "embed"),
        ({"dims": 3, "embed": 7}, "embed"),
        ({"dims": 3, "embed": "emb"}, "embed"),
        ({"dims": 3, "embed": "./missing.py:embed"}, "does not exist"),
        ({"dims": 3, "embed": "./emb.py:nope"}, "has no 'nope'"),
        ({"dims": 3, "embed": "./emb.py:NOT_CALLABLE"}, "is a int"),
        ({"dims": 3, "embed": "./emb:embed"}, "must end in .py"),
        ({"dims": 3, "embed": "tests.no_such_module:embed"}, "no module named"),
        ({"dims": 3, "embed": "tests.store_embeddings:WordCountEmbeddings"}, "is a class"),
        ({"dims": 3, "embed": "./emb.py:embed", "fields": "text"}, "fields"),
        ({"dims": 3, "embed": "./emb.py:embed", "fields": []}, "fields"),
        ({"dims": 3, "embed": "./emb.py:embed", "fields": ["ok", 1]}, "fields"),
        ({"dims": 3, "embed": "./emb.py:embed", "distance_type": "l2"}, "takes only"),
    ],
)
def test_a_bad_index_is_refused_with_its_reason(configure, index, message):
    configure({"index": index})
    with pytest.raises(StoreConfigError, match=r"store\.index") as raised:
        backend.index_config()
    assert message in str(raised.value).lower()
    # A configuration error, as Django reports it at startup.
    assert isinstance(raised.value, ImproperlyConfigured)


def test_a_provider_string_needs_langchain(configure):
    try:
        import langchain.embeddings  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("langchain is installed here: init_embeddings would be used")
    configure({"index": {"dims": 1536, "embed": "openai:text-embedding-3-small"}})
    with pytest.raises(StoreConfigError, match="langchain package"):
        backend.index_config()


def test_startup_fails_on_a_bad_index(configure):
    configure({"index": {"dims": 3, "embed": "./missing.py:embed"}})
    with pytest.raises(StoreConfigError, match="does not exist"):
        apps.get_app_config("store").ready()


# --------------------------------------------------------------------------
# The vector extension missing (messages; run everywhere)
# --------------------------------------------------------------------------


def test_sqlite_without_loadable_extensions_is_named(monkeypatch):
    class NoExtensions:  # sqlite3.Connection as this machine's Python builds it
        pass

    monkeypatch.setattr(store_index, "sqlite3", SimpleNamespace(Connection=NoExtensions))
    problem = store_index.sqlite_vec_problem()
    assert "cannot load extensions" in problem
    assert "enable_load_extension" in problem


def test_sqlite_without_sqlite_vec_is_named(monkeypatch):
    class Loads:
        enable_load_extension = None

    monkeypatch.setattr(store_index, "sqlite3", SimpleNamespace(Connection=Loads))
    monkeypatch.setitem(sys.modules, "sqlite_vec", None)  # import fails
    assert "pip install sqlite-vec" in store_index.sqlite_vec_problem()


def test_this_pythons_sqlite_is_judged_as_it_is():
    problem = store_index.sqlite_vec_problem()
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        assert "cannot load extensions" in problem
    else:
        assert problem is None or "sqlite-vec" in problem


def test_a_postgres_without_pgvector_is_named():
    class NoPgvector:
        def execute(self, sql):
            if sql.startswith("SELECT"):
                return SimpleNamespace(fetchone=lambda: None)
            raise psycopg.errors.FeatureNotSupported('extension "vector" is not available')

    problem = store_index.pgvector_problem(NoPgvector())
    assert 'extension "vector" is not available' in problem
    assert "pgvector/pgvector:pg17" in problem


@pytest.mark.django_db(transaction=True)
def test_the_embedded_default_says_sqlite_vec_is_missing_at_migrate_and_open(
    configure, monkeypatch, settings, tmp_path
):
    configure({"index": {"dims": DIMS, "embed": "tests.store_embeddings:embed"}})
    monkeypatch.setattr(backend, "_is_postgres", lambda: False)
    monkeypatch.setattr(backend, "sqlite_vec_problem", lambda: "sqlite-vec is missing (test)")
    settings.DATA_DIR = tmp_path
    with pytest.raises(StoreConfigError, match=r"sqlite-vec is missing \(test\)"):
        backend.setup_index_tables(plan=[])
    with pytest.raises(StoreConfigError, match=r"sqlite-vec is missing \(test\)"):
        backend.get_store()
    assert not (tmp_path / "store.sqlite3").exists()  # nothing opened


def _pgvector_available() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        return cursor.fetchone() is not None


@pytest.mark.django_db(transaction=True)
def test_migrate_and_the_store_say_pgvector_is_missing(configure):
    if connection.vendor != "postgresql":
        pytest.skip("runs on PostgreSQL (DATABASE_URL)")
    if _pgvector_available():
        pytest.skip("this PostgreSQL has pgvector: test_semantic_search runs instead")
    configure({"index": {"dims": DIMS, "embed": "tests.store_embeddings:embed"}})
    with pytest.raises(StoreConfigError) as raised:
        call_command("migrate", verbosity=0, interactive=False)
    assert "needs the pgvector extension" in str(raised.value)
    assert isinstance(raised.value, CommandError)  # manage.py prints the message alone
    assert "pgvector/pgvector:pg17" in str(raised.value)
    with pytest.raises(StoreConfigError, match="pgvector/pgvector:pg17"):
        backend.get_store()


# --------------------------------------------------------------------------
# Without an index nothing changes
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_without_an_index_no_vector_setup_runs(configure, monkeypatch):
    configure({"ttl": {"default_ttl": 60}})
    assert "index" not in backend.store_config()
    assert backend.index_config() is None

    def no_connection():
        raise AssertionError("no extension check or vector setup without an index")

    monkeypatch.setattr(backend, "_postgres_connect", no_connection)
    monkeypatch.setattr(backend, "sqlite_vec_problem", no_connection)
    backend.setup_index_tables(plan=[])
    store = backend.get_store()
    assert store.index_config is None
    assert store.embeddings is None


@pytest.mark.django_db(transaction=True)
def test_without_an_index_a_query_is_ignored_as_on_the_langgraph_server(sdk):
    # The reference server passes `query` to the store, and LangGraph's stores
    # ignore it without an index: the plain listing, filter applied.
    ns = ["test", uuid.uuid4().hex]
    sdk.store.put_item(ns, "a", {"text": "a cat", "kind": "pet"})
    sdk.store.put_item(ns, "b", {"text": "a dog", "kind": "pet"}, index=["text"])
    sdk.store.put_item(ns, "c", {"text": "fish"}, index=False)
    listed = [i["key"] for i in sdk.store.search_items(ns)["items"]]
    assert [i["key"] for i in sdk.store.search_items(ns, query="dogs")["items"]] == listed
    pets = sdk.store.search_items(ns, query="dogs", filter={"kind": "pet"})["items"]
    assert sorted(i["key"] for i in pets) == ["a", "b"]


# --------------------------------------------------------------------------
# Semantic search, where the extension exists
# --------------------------------------------------------------------------


@pytest.fixture(
    params=[
        ("postgres", "embed"),
        ("postgres", "aembed"),
        ("sqlite", "embed"),
        ("sqlite", "aembed"),
    ],
    ids=lambda p: "-".join(p),
)
def indexed_store(request, configure, monkeypatch, settings, tmp_path):
    """The store with an index (the word-count embedding, a function or an async
    one), on PostgreSQL with pgvector or on SQLite with sqlite-vec; skipped where
    the extension is missing."""
    database, embed = request.param
    if database == "postgres":
        if connection.vendor != "postgresql":
            pytest.skip("needs PostgreSQL (DATABASE_URL)")
        if not _pgvector_available():
            pytest.skip("this PostgreSQL has no pgvector extension (use pgvector/pgvector:pg17)")
    else:
        problem = store_index.sqlite_vec_problem()
        if problem:
            pytest.skip(f"SQLite semantic search cannot run here: {problem}")
        monkeypatch.setattr(backend, "_is_postgres", lambda: False)
        settings.DATA_DIR = tmp_path
    configure(
        {"index": {"dims": DIMS, "embed": f"tests.store_embeddings:{embed}", "fields": ["text"]}}
    )
    backend.setup_index_tables(plan=[])  # what migrate does
    return database


@pytest.mark.django_db(transaction=True)
def test_semantic_search(indexed_store, sdk):
    ns = ["test", uuid.uuid4().hex]
    sdk.store.put_item(ns, "cat", {"text": "a cat on the mat", "kind": "pet"})
    sdk.store.put_item(ns, "dog", {"text": "dog and dog again", "kind": "pet"})
    sdk.store.put_item(ns, "fish", {"text": "fish", "kind": "food"})
    # `index` on put: other fields than the configured ones, or none.
    sdk.store.put_item(ns, "bird", {"title": "bird", "text": "dog"}, index=["title"])
    sdk.store.put_item(ns, "hidden", {"text": "cat cat cat"}, index=False)

    found = sdk.store.search_items(ns, query="cats")["items"]
    assert found[0]["key"] == "cat"
    assert found[0]["score"] is not None
    scores = [i["score"] for i in found if i.get("score") is not None]
    assert scores == sorted(scores, reverse=True)
    assert "hidden" not in [i["key"] for i in found if i.get("score") is not None]

    assert sdk.store.search_items(ns, query="a bird")["items"][0]["key"] == "bird"
    assert sdk.store.search_items(ns, query="dogs")["items"][0]["key"] == "dog"
    food = sdk.store.search_items(ns, query="dogs", filter={"kind": "food"})["items"]
    assert [i["key"] for i in food] == ["fish"]
    assert len(sdk.store.search_items(ns, query="cats", limit=2)["items"]) == 2

    # Updating an item re-embeds it.
    sdk.store.put_item(ns, "fish", {"text": "a bird, really", "kind": "food"})
    assert (
        sdk.store.search_items(ns, query="bird", filter={"kind": "food"})["items"][0]["key"]
        == "fish"
    )
    # Without a query: the plain listing, as before.
    assert {i["key"] for i in sdk.store.search_items(ns, limit=10)["items"]} == {
        "cat",
        "dog",
        "fish",
        "bird",
        "hidden",
    }


@pytest.mark.django_db(transaction=True)
def test_the_postgres_store_checks_its_vector_table_against_dims(configure):
    if connection.vendor != "postgresql" or not _pgvector_available():
        pytest.skip("needs PostgreSQL with pgvector (use pgvector/pgvector:pg17)")
    configure({"index": {"dims": DIMS, "embed": "tests.store_embeddings:embed"}})
    call_command("migrate", verbosity=0, interactive=False)  # creates the vector tables
    assert backend.get_store().index_config["dims"] == DIMS
    configure({"index": {"dims": DIMS + 1, "embed": "tests.store_embeddings:embed"}})
    with pytest.raises(StoreConfigError, match=rf"vector\({DIMS}\), but store.index.dims is 5"):
        backend.get_store()
