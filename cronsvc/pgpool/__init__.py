"""Django's PostgreSQL backend for the API's connection pool (see base)."""
