"""The database's clock.

Beat compares due times, renews its lease and ages heartbeats against one
clock, the database's, so hosts with skewed clocks agree on what is due.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import DateTimeField
from django.db.models.expressions import RawSQL
from django.utils import timezone as djtz


def db_now() -> datetime:
    """The database's `now()` (PostgreSQL); this process's clock on other backends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]
    return djtz.now()


def db_now_sql() -> RawSQL | datetime:
    """`db_now()` as an expression for a query's filter: on PostgreSQL the
    transaction's `now()` in the statement itself (one round trip less, and the
    same instant in every statement of the transaction); elsewhere this
    process's clock."""
    if connection.vendor == "postgresql":
        return RawSQL("now()", [], output_field=DateTimeField())
    return djtz.now()
