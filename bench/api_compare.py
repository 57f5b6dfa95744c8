"""The cron API side by side with the reference LangGraph server, through the SDK.

    scripts/bench.sh api                              # 10,000 crons, 3 rounds, all targets
    .venv/bin/python bench/api_compare.py --crons 1000 --calls 50 --targets sqlite,reference

Targets, each started here as a subprocess on a loopback port of its own:

- `sqlite`: cronsvc's embedded default, `manage.py dev --no-worker --no-beat`
  on a fresh data directory (SQLite);
- `postgres`: cronsvc in production form, `manage.py serve` on a scratch
  PostgreSQL database (BENCH_DB, default cronsvc_bench_api);
- `reference`: the LangGraph dev server, `langgraph dev --no-browser` from
  `langgraph-cli[inmem]`, installed on first use into a venv of the
  benchmark's own (BENCH_REFVENV, default ~/.cache/cronsvc-bench/refvenv;
  never a dependency of the project), serving this repo's langgraph.json.

For each target: --crons stateless crons are created through
`client.crons.create` (a yearly schedule, so nothing fires; the load time is
printed), then for --rounds rounds each call is timed --calls times through
the official Python SDK (`langgraph_sdk.get_sync_client`, one keep-alive
client): create, get (`client.http.get('/runs/crons/{id}')`, the SDK has no
`crons.get`), search first page, search at offset N/2, count, update
(`client.crons.update`), delete (the crons just created, so N stays N). The
table shows p50, mean and p99 in ms, each the median over the rounds, and the
ratio cronsvc / reference (below 1: cronsvc is faster).

On PostgreSQL the table is vacuumed and analysed after the load, as
autovacuum does shortly after an import (crons migration 0006).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchenv import ROOT

PYTHON = sys.executable
SCHEDULE = "0 0 1 1 *"  # yearly: nothing fires while the benchmark runs
OPS = ["create", "get", "search", "search_offset", "count", "update", "delete"]
TARGETS = ["sqlite", "postgres", "reference"]
REFVENV = Path(
    os.environ.get("BENCH_REFVENV", Path.home() / ".cache" / "cronsvc-bench" / "refvenv")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# ----------------------------------------------------------------- servers


def reference_venv() -> Path:
    """The venv with `langgraph dev`, created on first use."""
    langgraph = REFVENV / "bin" / "langgraph"
    if not langgraph.exists():
        print(f"installing langgraph-cli[inmem] into {REFVENV} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(REFVENV)], check=True)
        subprocess.run(
            [str(REFVENV / "bin" / "pip"), "install", "-q", "langgraph-cli[inmem]"], check=True
        )
    return langgraph


def reference_config() -> dict:
    """This repo's langgraph.json with absolute paths: the reference server runs
    in a directory of its own (it keeps its state in the working directory)."""
    config = json.loads((ROOT / "langgraph.json").read_text())
    config["dependencies"] = [str((ROOT / d).resolve()) for d in config.get("dependencies", [])]
    config["graphs"] = {
        name: str((ROOT / spec).resolve()) if spec.startswith(".") else spec
        for name, spec in config["graphs"].items()
    }
    return config


class Server:
    """One target, started as a subprocess and stopped with its process group."""

    def __init__(self, target: str, workdir: Path, *, reuse: bool = False):
        self.target = target
        self.reuse = reuse  # postgres: serve BENCH_DB as it is (no new database, no load)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir / target
        self.workdir.mkdir(parents=True)
        self.log = open(self.workdir / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict:
        # No LangSmith/LangGraph keys or tracing for any target (LANG* dropped, LANG reset).
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANG")}
        env.pop("DATABASE_URL", None)
        env["CRONSVC_DATA_DIR"] = str(self.workdir)
        env["LOG_LEVEL"] = "WARNING"
        env["LANG"] = "C.UTF-8"
        if self.target == "postgres":
            admin = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
            name = os.environ.get("BENCH_DB", "cronsvc_bench_api")
            env["DATABASE_URL"] = admin.rsplit("/", 1)[0] + "/" + name
            env["CRONSVC_ALLOW_ANONYMOUS"] = "true"
        return env

    def start(self) -> None:
        env = self.env()
        if self.target == "postgres":
            if not self.reuse:
                self.recreate_database(env["DATABASE_URL"])
            subprocess.run(
                [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
            )
            argv = [PYTHON, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}"]
        elif self.target == "sqlite":
            argv = [
                PYTHON,
                "manage.py",
                "dev",
                "--no-worker",
                "--no-beat",
                "--port",
                str(self.port),
            ]
        else:
            config = self.workdir / "langgraph.json"
            config.write_text(json.dumps(reference_config()))
            argv = [
                str(reference_venv()),
                "dev",
                "--no-browser",
                "--no-reload",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--config",
                str(config),
            ]
        cwd = ROOT if self.target != "reference" else self.workdir  # its state dir lands in cwd
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    @staticmethod
    def recreate_database(url: str) -> None:
        import psycopg

        admin, name = url.rsplit("/", 1)
        with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.target} exited: see {self.workdir / 'server.log'}")
            try:
                if httpx.get(self.url + "/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.target} not ready in {timeout} s: {self.workdir / 'server.log'}")

    def after_load(self) -> None:
        if self.target == "postgres":
            import psycopg

            with psycopg.connect(self.env()["DATABASE_URL"], autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE crons_cron")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self.log.close()


# ----------------------------------------------------------------- measuring


def client_for(url: str):
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=url, api_key=None)


def assistant_of(client) -> str:
    found = client.assistants.search(graph_id="agent", limit=1)
    return found[0]["assistant_id"] if found else "agent"


def load(url: str, assistant_id: str, count: int, threads: int = 4) -> float:
    """Create `count` crons through the SDK (a few clients in parallel); seconds."""

    def part(n: int) -> None:
        client = client_for(url)
        for _ in range(n):
            client.crons.create(assistant_id, schedule=SCHEDULE, input={"messages": []})

    started = time.perf_counter()
    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, shares))
    return time.perf_counter() - started


def timed(fn: Callable[[], object], samples: list[float]) -> object:
    started = time.perf_counter()
    result = fn()
    samples.append((time.perf_counter() - started) * 1000)
    return result


def one_round(client, assistant_id: str, size: int, calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    made = []
    for _ in range(calls):
        cron = timed(
            lambda: client.crons.create(assistant_id, schedule=SCHEDULE, input={"messages": []}),
            samples["create"],
        )
        made.append(cron["cron_id"])
    for cron_id in made:
        timed(lambda cron_id=cron_id: client.http.get(f"/runs/crons/{cron_id}"), samples["get"])
    for _ in range(calls):
        page = timed(lambda: client.crons.search(limit=10), samples["search"])
        assert len(page) == 10, page
    for _ in range(calls):
        page = timed(
            lambda: client.crons.search(limit=10, offset=size // 2), samples["search_offset"]
        )
        assert len(page) == 10, page
    for _ in range(calls):
        total = timed(lambda: client.crons.count(), samples["count"])
        assert total >= size, total
    for cron_id in made:
        timed(
            lambda cron_id=cron_id: client.crons.update(cron_id, schedule="0 0 2 1 *"),
            samples["update"],
        )
    for cron_id in made:
        timed(lambda cron_id=cron_id: client.crons.delete(cron_id), samples["delete"])
    return samples


def measure(server: Server, size: int, rounds: int, calls: int) -> dict[str, dict[str, float]]:
    client = client_for(server.url)
    assistant_id = assistant_of(client)
    if server.reuse:
        size, seconds = client.crons.count(), 0.0
        print(f"[{server.target}] {size:,} crons already there", flush=True)
    else:
        print(f"[{server.target}] loading {size:,} crons through the SDK ...", flush=True)
        seconds = load(server.url, assistant_id, size)
        print(f"[{server.target}] loaded in {seconds:.1f} s ({size / seconds:,.0f}/s)", flush=True)
        server.after_load()
    results = []
    for number in range(rounds):
        samples = one_round(client, assistant_id, size, calls)
        results.append(
            {
                op: {"p50": pct(v, 50), "mean": statistics.mean(v), "p99": pct(v, 99)}
                for op, v in samples.items()
            }
        )
        summary = ", ".join(f"{op} {results[-1][op]['p50']:.1f}" for op in OPS)
        print(f"[{server.target}] round {number + 1}: p50 ms {summary}", flush=True)
    return {
        op: {
            stat: statistics.median(r[op][stat] for r in results) for stat in ("p50", "mean", "p99")
        }
        for op in OPS
    } | {"load": {"seconds": seconds, "size": size}}


def table(figures: dict[str, dict], size: int, rounds: int, calls: int) -> str:
    names = {
        "create": "create",
        "get": "get",
        "search": "search, first page",
        "search_offset": f"search, offset {size // 2:,}",
        "count": "count",
        "update": "update",
        "delete": "delete",
    }
    targets = [t for t in TARGETS if t in figures]
    head = ["call"]
    for t in targets:
        head += [f"{t} p50", "mean", "p99"]
    ours = [t for t in targets if t != "reference" and "reference" in figures]
    for t in ours:
        head += [f"{t}/ref p50", "mean", "p99"]
    rows = [head]
    for op in OPS:
        row = [names[op]]
        for t in targets:
            row += [f"{figures[t][op][s]:.2f}" for s in ("p50", "mean", "p99")]
        for t in ours:
            row += [
                f"{figures[t][op][s] / figures['reference'][op][s]:.2f}"
                for s in ("p50", "mean", "p99")
            ]
        rows.append(row)
    loads = ", ".join(f"{t} {figures[t]['load']['seconds']:.0f} s" for t in targets)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        (
            f"{size:,} crons; {calls} calls per round, median of {rounds} rounds; ms "
            f"(ratio < 1: cronsvc faster). Loading {size:,} crons through the SDK: {loads}."
        ),
        "| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in rows[1:]
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crons", type=int, default=10_000, help="crons loaded first (N)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="calls of each kind per round")
    parser.add_argument("--targets", default=",".join(TARGETS), help="of " + ",".join(TARGETS))
    parser.add_argument(
        "--reuse-postgres",
        action="store_true",
        help="serve BENCH_DB as it is, e.g. after a 1,000,000-cron import (bench/beat_scale.py)",
    )
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cronsvc-api-bench-"))
    figures = {}
    for target in targets:
        server = Server(target, workdir, reuse=args.reuse_postgres)
        try:
            server.start()
            figures[target] = measure(server, args.crons, args.rounds, args.calls)
        finally:
            server.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # kept, with the servers' logs, on failure
    print()
    size = max(f["load"]["size"] for f in figures.values())
    print(table(figures, size, args.rounds, args.calls))
    print(f"\n(whole benchmark: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
