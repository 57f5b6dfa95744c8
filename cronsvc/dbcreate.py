"""Make sure the database DATABASE_URL names exists before migrating.

A newcomer's first `DATABASE_URL=postgres://…/cronsvc scripts/dev.sh` should
not end in a page of traceback because `cronsvc` was never created: on
PostgreSQL the database is created when the server answers and the role may
create databases; any other failure is one line that says what to do.
"""

from __future__ import annotations

import psycopg
from django.db import OperationalError, connections
from psycopg import sql


class DatabaseUnreachable(Exception):
    """The database cannot be reached or created; the message is one line."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def database_ensure(alias: str = "default") -> bool:
    """Connect to `alias`; on PostgreSQL, create its database when the server
    says it does not exist. True when it was created. DatabaseUnreachable
    (one line) when the server cannot be reached or the database not created."""
    connection = connections[alias]
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        missing = f'database "{connection.settings_dict["NAME"]}" does not exist'
        if connection.vendor != "postgresql" or missing not in str(exc):
            raise DatabaseUnreachable(_where(connection, exc)) from exc
    else:
        return False
    params = connection.get_connection_params()
    name = params.pop("dbname", None) or connection.settings_dict["NAME"]
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    try:
        with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise DatabaseUnreachable(
            f"Database {name!r} does not exist and could not be created "
            f"({_first_line(exc)}): create it (createdb {name}) or fix DATABASE_URL."
        ) from exc
    return True


def _where(connection, exc: BaseException) -> str:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        place = f"{settings.get('HOST') or 'localhost'}:{settings.get('PORT') or 5432}"
        return (
            f"Cannot reach PostgreSQL database {settings['NAME']!r} at {place}: "
            f"{_first_line(exc)}. Is the server running, and is DATABASE_URL right?"
        )
    return f"Cannot open database {settings['NAME']}: {_first_line(exc)}."
