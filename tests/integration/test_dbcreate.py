"""`manage.py migrate` creates a missing PostgreSQL database, and says in one
line what is wrong when the server cannot be reached (cronsvc.dbcreate)."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.conf import settings

ROOT = settings.BASE_DIR


def _migrate_plan(database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "manage.py", "migrate", "--plan"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _server() -> dict:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("PostgreSQL only")
    return db


def test_missing_database_is_created():
    db = _server()
    name = f"cronsvc_created_{uuid.uuid4().hex[:8]}"
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
    try:
        result = _migrate_plan(url)
        assert result.returncode == 0, result.stderr
        assert f"Created database {name}." in result.stdout
        again = _migrate_plan(url)
        assert again.returncode == 0, again.stderr
        assert "Created database" not in again.stdout
    finally:
        with psycopg.connect(
            host=db["HOST"], port=db["PORT"], user=db["USER"], dbname="postgres", autocommit=True
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_unreachable_server_is_one_line():
    _server()
    result = _migrate_plan("postgres://postgres@127.0.0.1:1/cronsvc")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Cannot reach PostgreSQL database 'cronsvc' at 127.0.0.1:1" in lines[0]
