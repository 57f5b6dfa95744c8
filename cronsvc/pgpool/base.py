"""Django's PostgreSQL backend, its pool's connections checked when they were
idle a while instead of before every loan (cronsvc.settings uses it for the
API's pool, CRONSVC_DB_POOL).

With CONN_HEALTH_CHECKS Django has psycopg_pool check each connection it
lends with an empty query: a round trip per request, as much as the one
query most reads make. Here a connection handed back less than IDLE_CHECK
seconds ago is lent as it is (it was working then); one idle longer, or new
to this process, is checked, and one that fails the check goes back to the
pool (which discards a broken connection) for the next, so a database
restart or an idle timeout costs no request. A connection that breaks in use
fails its request and is discarded, as under Django's check."""

from __future__ import annotations

import weakref
from time import monotonic

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

IDLE_CHECK = 2.0  # seconds

# connection -> when it went back to the pool (monotonic)
_returned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        pool = self.pool
        connection = super().get_new_connection(conn_params)
        if pool is None:
            return connection
        # Every pooled connection may be broken after a restart: at most
        # max_size of them are tried, then a fresh one.
        for _ in range(pool.max_size + 1):
            returned = _returned.pop(connection, None)
            if returned is not None and monotonic() - returned < IDLE_CHECK:
                return connection
            try:
                ConnectionPool.check_connection(connection)
            except psycopg.Error:
                pool.putconn(connection)  # broken: the pool closes and replaces it
                connection = super().get_new_connection(conn_params)
            else:
                return connection
        return connection

    def _close(self):
        if self.connection is not None and self.pool:
            _returned[self.connection] = monotonic()
        return super()._close()
