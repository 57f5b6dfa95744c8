"""The database's clock.

Beat compares due times, renews its lease and ages heartbeats against one
clock, the database's, so hosts with skewed clocks agree on what is due.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone as djtz


def db_now() -> datetime:
    """The database's `now()` (PostgreSQL); this process's clock on other backends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]
    return djtz.now()
