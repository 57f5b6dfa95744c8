"""What custom auth adds to a cron search, at 10,000 crons.

    .venv/bin/python bench/auth_overhead.py [--crons 10000] [--users 100] [--n 300]

Loads --crons crons spread over --users owners (metadata {"owner": user},
as the owner-only recipe stamps it), then times POST /runs/crons/search
({"limit": 10}) in process through Django's test client, --n times each:

- without custom auth (every cron visible; its total from the crons
  counters, not a COUNT),
- without custom auth, the owner's filter sent as the search's `metadata`
  (the same rows and SQL filter: what is left is custom auth's machinery),
- with the owner-only recipe: the authenticate handler (a bearer token), then
  crons.search and threads.read, whose filters the query applies in SQL.

Prints p50/p90 of each and the difference, the handler calls alone (the
event-loop bridge), and the PostgreSQL plan of the filtered search's one
statement (its page and total: cronsvc.http.pagination.counted_page).
Needs PostgreSQL on loopback (BENCH_ADMIN_URL to change it).
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchenv import BenchDatabase

DB = BenchDatabase("cronsvc_bench_auth", redis_db=14, queue="cronsvc-bench-auth")


def owner_auth():
    from langgraph_sdk import Auth

    auth = Auth()

    @auth.authenticate
    async def authenticate(authorization: str | None) -> str:
        _, _, token = (authorization or "").partition(" ")
        if not token.startswith("user"):
            raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
        return token

    @auth.on
    async def owner_only(ctx, value):
        filters = {"owner": ctx.user.identity}
        metadata = value.setdefault("metadata", {})
        if metadata is None:
            metadata = value["metadata"] = {}
        metadata.update(filters)
        return filters

    return auth


def timed(fn, n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crons", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    DB.recreate()

    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from crons.models import Cron
    from crons.selectors import cron_search
    from crons.services import crons_bulk_create
    from crons.wire import cron_columns
    from cronsvc import custom_auth
    from cronsvc.http.pagination import counted_page
    from cronsvc.selectors import assistant_get_or_404

    settings.ALLOWED_HOSTS = ["*"]
    specs = [
        {"schedule": f"{i % 60} * * * *", "metadata": {"owner": f"user{i % args.users}"}}
        for i in range(args.crons)
    ]
    crons_bulk_create(assistant=assistant_get_or_404("agent"), specs=specs)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"{Cron.objects.count()} crons, {args.users} owners")

    client = Client()
    body = {"limit": 10}

    def search(query=body, **headers):
        def call():
            answer = client.post(
                "/runs/crons/search", query, content_type="application/json", headers=headers
            )
            assert answer.status_code == 200, answer.content
            return answer

        return call

    auth = owner_auth()
    # Interleaved, so both see the same load on the machine.
    plain: list[float] = []
    same_filter: list[float] = []
    with_auth: list[float] = []
    owners = {**body, "metadata": {"owner": "user7"}}
    for _ in range(args.n):
        plain += timed(search(), 1)
        same_filter += timed(search(owners), 1)
        with override_settings(CRONSVC_AUTH=auth):
            with_auth += timed(search(Authorization="Bearer user7"), 1)
    with override_settings(CRONSVC_AUTH=auth):
        answer = search(Authorization="Bearer user7")()
        assert len(answer.json()) == 10, answer.content
        assert answer["X-Pagination-Total"] == str(args.crons // args.users)

        user = custom_auth.AuthUser("user7")

        def handlers():
            with custom_auth.acting_as(user):
                custom_auth.authorize("crons", "search", {})
                custom_auth.authorize("threads", "read", {})
            custom_auth.call_handler(auth._authenticate_handler, authorization="Bearer user7")

        alone = timed(handlers, args.n)
        with custom_auth.acting_as(user):
            # The statement the API sends: the page and its total (counted_page).
            qs = cron_search().only(*cron_columns(None))
            with CaptureQueriesContext(connection) as queries:
                counted_page(qs, 0, 10)
            (statement,) = [q["sql"] for q in queries.captured_queries]
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + statement)
                plan = "\n".join(row[0] for row in cursor.fetchall())

    print(f"search, no custom auth:   p50 {pct(plain, 50):.2f} ms  p90 {pct(plain, 90):.2f} ms")
    print(
        f"search, owner-only auth:  p50 {pct(with_auth, 50):.2f} ms  "
        f"p90 {pct(with_auth, 90):.2f} ms"
    )
    print(
        f"search, no custom auth, the owner's filter sent as metadata: "
        f"p50 {pct(same_filter, 50):.2f} ms  p90 {pct(same_filter, 90):.2f} ms"
    )
    print(f"difference at p50 (auth vs no auth): {pct(with_auth, 50) - pct(plain, 50):+.2f} ms")
    print(
        f"difference at p50 (auth vs the same filter without auth): "
        f"{pct(with_auth, 50) - pct(same_filter, 50):+.2f} ms"
    )
    print(
        f"the three handler calls alone (authenticate, crons.search, threads.read): "
        f"p50 {pct(alone, 50):.3f} ms"
    )
    print("plan of the owner's page and total (one statement):")
    print(plan)


if __name__ == "__main__":
    main()
