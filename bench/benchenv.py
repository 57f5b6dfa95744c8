"""What the PostgreSQL benchmarks set up first: a scratch database and a Redis
queue of their own, named by the benchmark, on loopback by default.

    from benchenv import BenchDatabase
    DB = BenchDatabase("cronsvc_bench", redis_db=14, queue="cronsvc-bench")  # before Django

BENCH_DB and BENCH_ADMIN_URL override the database name and the server; the
Celery settings may be overridden from the environment too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class BenchDatabase:
    def __init__(self, name: str, *, redis_db: int, queue: str):
        self.name = os.environ.get("BENCH_DB", name)
        self.admin_url = os.environ.get(
            "BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres"
        )
        os.environ["DATABASE_URL"] = self.admin_url.rsplit("/", 1)[0] + "/" + self.name
        os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{redis_db}")
        os.environ.setdefault("CELERY_QUEUE", queue)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cronsvc.settings")
        os.environ.setdefault("LOG_LEVEL", "WARNING")

    def recreate(self) -> None:
        """Drop and create the database, set Django up and migrate."""
        import django
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
