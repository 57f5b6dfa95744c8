"""Waiting under load: 500 open run streams and 500 joins on 1-second runs in
the production topology, while a prober times `/ok` and `crons.count`.

    scripts/bench.sh waiting                          # 500 streams + 500 joins
    scripts/bench.sh waiting --streams 50 --joins 50  # a quick try
    .venv/bin/python bench/waiting_load.py --workers 2 --concurrency 32 --clients 8

What it starts, each as the deployment starts it (cronsvc/topology.py):

- PostgreSQL: a server of the benchmark's own (`--postgres private`, the
  default: initdb'd into a scratch directory, on a free loopback port, with
  compose's max_connections 200), because 64 worker slots hold a connection
  each while they run and with the API's pools that does not fit beside
  other users of a shared server with max_connections 100 (`--postgres
  shared` uses BENCH_ADMIN_URL's). The database: BENCH_DB, default
  cronsvc_bench_waiting; Redis database 11 of its own;
- the API: `manage.py serve` (gunicorn with --api-workers uvicorn worker
  processes, WEB_CONCURRENCY, default 2) on a loopback port;
- --workers Celery worker processes (default 2), the deployment's worker
  command line (threads pool) with CELERY_WORKER_CONCURRENCY=--concurrency
  (default 32): 64 worker slots. No beat: runs created through the API wake
  the workers themselves.

The graph is `slow` (examples/slow.py): one node that sleeps
SLOW_GRAPH_SECONDS, set to --run-seconds (1.0) in the workers' environment,
and answers "Answered after 1 s." — deterministic, offline.

The load, through the official Python SDK (`langgraph_sdk.get_client`):
--streams stateless `client.runs.stream(None, "slow", ...)` and --joins
`client.runs.join(...)` (each on a thread of its own, after
`threads.create` and `runs.create`), interleaved, all started at once (or
over --ramp seconds) and spread round-robin over --clients (8) async clients.
`get_client` takes no connection limits, so each client's transport is
replaced with an `httpx.AsyncHTTPTransport(retries=5)` whose `httpx.Limits`
fit its share of the requests (max_connections and max_keepalive_connections
= share + 8: 133 for 1,000 over 8 clients; keepalive_expiry
--keepalive-expiry, httpx's 5 s) and its timeout is connect 30 s, read 300 s,
write 60 s, pool 60 s (`get_client(timeout=...)`). A request succeeds when a
stream ends with the graph's answer in its last `values` event (no `error`
event) and a join returns it; anything else is counted as a failure, and the
first ten are printed with what they received or raised.

Meanwhile a prober (a process of its own, in a session of its own, with its
own SDK client and event loop, so neither the load's loop nor its share of the
CPU delays it: Linux's autogroups weigh sessions against each other) times `client.http.get("/ok")` and
`client.crons.count()` every --probe-every (0.05 s) each, for --idle seconds
before the load and throughout it.

A monitor thread samples, every 0.2 s: the RSS of the API's processes (the
gunicorn master and its uvicorn workers, VmRSS from /proc), the connections
to the benchmark's database (`pg_stat_activity`, from a connection to the
`postgres` database, so it does not count itself), the streams and joins
open at that moment, and the CPU used so far by the API, the workers,
PostgreSQL and the benchmark's own processes (/proc/<pid>/stat). Memory per
open stream: the API's RSS at the sample with the most open streams + joins,
minus its RSS before the load, divided by those open requests (an upper
bound: what the burst of requests left in the heap counts too).

Printed: the configuration and the load average; successes and failures;
each step's duration (a stream's first event and whole, a join's
threads.create, runs.create and join); p50/p99/max of the probes idle and
under load; the memory; the peak connections against
cronsvc.topology.connection_budget() and max_connections; the machine's CPU
and each group's; the wall time from the first request to the last answer;
and a timeline (every --bucket seconds: requests open and done, the probes,
CPU per group and of everything else on the machine).

Knobs for finding out why something failed, not the deployment's defaults:
--server-keepalive (gunicorn's --keep-alive through GUNICORN_CMD_ARGS) and
--stateless-grace (CRONSVC_STATELESS_THREAD_GRACE for every process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from benchenv import ROOT, BenchDatabase

TICKS = os.sysconf("SC_CLK_TCK")

DB = BenchDatabase("cronsvc_bench_waiting", redis_db=11, queue="cronsvc-bench-waiting")
INPUT = {"messages": [{"role": "user", "content": "hello"}]}
CLIENT_TIMEOUT = (30.0, 300.0, 60.0, 60.0)  # connect, read, write, pool (s)


# ----------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1)]


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def children_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(proc.name))
    return found


def tree_rss(pid: int) -> tuple[int, int]:
    """RSS of `pid` and its children (gunicorn's master and its workers); the
    number of processes counted."""
    pids = [pid, *children_of(pid)]
    return sum(rss_bytes(p) for p in pids), len(pids)


def tree_cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """CPU seconds of `pid`, and with `tree` of its children that exited
    (reaped) and of its live children: gunicorn's workers, PostgreSQL's backends."""

    def fields(p: int) -> list[str]:
        try:
            return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return []

    own = fields(pid)
    if not own:
        return 0.0
    if not tree:
        return sum(int(v) for v in own[11:13]) / TICKS  # utime stime
    ticks = sum(int(v) for v in own[11:15])  # utime stime cutime cstime
    for child in children_of(pid):
        ticks += sum(int(v) for v in fields(child)[11:13])
    return ticks / TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of all cores so far (busy: not idle or iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# Seconds an idle kept-alive connection stays in a client's pool: httpx's
# default. Against the deployment's server keep-alive (gunicorn's --keep-alive,
# 2 s, which its uvicorn workers take) a client may send a request on a
# connection the server is closing, the more so when the server's loop lags;
# the request fails with ReadError (connection reset) and the SDK does not
# retry it. --server-keepalive raises the server's above it.
KEEPALIVE_EXPIRY = 5.0


def sdk_client(url: str, connections: int, keepalive_expiry: float = KEEPALIVE_EXPIRY):
    """An official async SDK client whose connection pool holds `connections`."""
    import httpx
    from langgraph_sdk import get_client

    client = get_client(url=url, api_key=None, timeout=CLIENT_TIMEOUT)
    # get_client builds its httpx.AsyncClient with the default pool (100
    # connections, 20 kept alive) and no way to change it: give it one that
    # fits this client's share of the open requests.
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=keepalive_expiry,
    )
    client.http.client._transport = httpx.AsyncHTTPTransport(retries=5, limits=limits)
    return client


def answered(values: object) -> bool:
    """The slow graph's answer is the last message of these state values."""
    if not isinstance(values, dict):
        return False
    messages = values.get("messages") or []
    last = messages[-1] if messages else {}
    return isinstance(last, dict) and str(last.get("content", "")).startswith("Answered after")


class PrivatePostgres:
    """A PostgreSQL server of the benchmark's own, as compose runs it
    (max_connections 200, POSTGRES_MAX_CONNECTIONS' default): 64 worker slots
    hold a connection each while they run, which with the API's pools does not
    fit beside other users of a shared server with max_connections 100.
    initdb'd into a scratch directory (as the `postgres` user when run as
    root) on a free loopback port, stopped and removed afterwards."""

    def __init__(self, max_connections: int, *, statements: bool = False):
        self.max_connections = max_connections
        self.statements = statements  # load pg_stat_statements (--pg-top)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cronsvc-waiting-pg-"))
        self.bin = self._bindir()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @staticmethod
    def _bindir() -> Path:
        found = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
        )
        if not found:
            raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        return found[-1].parent

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, stdout=subprocess.DEVNULL, cwd=self.dir)

    def start(self) -> str:
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run(
            str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
            f"-c max_connections={self.max_connections}"
        )
        if self.statements:
            options += " -c shared_preload_libraries=pg_stat_statements"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "postgres.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def pid(self) -> int:
        return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def statements_reset() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        cursor.execute("SELECT pg_stat_statements_reset()")
    connection.close()


def statements_top(n: int) -> str:
    """The `n` statements that took PostgreSQL the most time since the reset."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT round(total_exec_time::numeric, 0), calls, "
            "round((total_exec_time / calls)::numeric, 3), left(regexp_replace(query, '\\s+', "
            "' ', 'g'), 110) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s",
            [n],
        )
        rows = cursor.fetchall()
    connection.close()
    lines = ["", "| total ms | calls | ms/call | statement |", "|---|---|---|---|"]
    lines += [f"| {total} | {calls} | {each} | `{query}` |" for total, calls, each, query in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------- prober


def prober(url: str, every: float, stop, results, nice: int = 0) -> None:
    """In a process of its own (at niceness `nice`): time /ok and crons.count
    every `every` s each, and its own loop's lag, until `stop` is set; send
    [(kind, started_at, ms, ok)] on `results`."""

    async def main() -> list:
        client = sdk_client(url, 4)
        samples: list = []

        async def loop(kind: str, call) -> None:
            while not stop.is_set():
                started_at = time.time()
                began = time.perf_counter()
                try:
                    await call()
                    ok = True
                except Exception:  # noqa: BLE001 - a failed probe is counted, not raised
                    ok = False
                ms = (time.perf_counter() - began) * 1000
                samples.append((kind, started_at, ms, ok))
                await asyncio.sleep(max(0.0, every - ms / 1000))

        async def own_lag() -> None:
            # How late this process's own loop wakes from a sleep: a probe
            # cannot be timed more precisely than this (on a saturated host
            # the prober waits for a core too).
            while not stop.is_set():
                started_at = time.time()
                began = time.perf_counter()
                await asyncio.sleep(every)
                ms = (time.perf_counter() - began - every) * 1000
                samples.append(("lag", started_at, ms, True))

        # A session of its own: Linux (sched_autogroup) weighs one scheduling
        # group per session, and in the benchmark's the SDK clients would
        # take the prober's share; a health checker is a process of its own.
        os.setsid()
        if nice:
            from cronsvc.autogroup import renice_own_group

            os.nice(nice)
            # The niceness weighs against the servers' groups only as its
            # group's (this process leads the new session's group).
            renice_own_group(nice)
        await asyncio.gather(
            loop("ok", lambda: client.http.get("/ok")),
            loop("count", lambda: client.crons.count()),
            own_lag(),
        )
        await client.aclose()
        return samples

    results.send(asyncio.run(main()))
    results.close()


def load_group_nice(nice: int) -> None:
    """Linux (sched_autogroup) weighs one scheduling group per session before
    the tasks in it, and the servers and the prober each run in a session of
    their own: a niceness orders the load's thread against them only through
    its group. This process's group is reniced when it leads its session
    (run under `setsid -w`); otherwise the niceness orders only this
    process's threads, and that is said."""
    from cronsvc.autogroup import renice_own_group

    group = renice_own_group(nice)
    if group is not None:
        print(f"the load's scheduling group: {group}", flush=True)
    else:
        print(
            "--load-nice: this process leads no scheduling group of its own, so the "
            "niceness does not weigh against the servers'; run under `setsid -w` for it to",
            flush=True,
        )


# ----------------------------------------------------------------- monitor


class Monitor(threading.Thread):
    """Samples the API's RSS, the benchmark database's connections, the open
    requests and the CPU used so far by each group of processes (`groups`:
    name -> its pids and whether their children count) every `every` s."""

    def __init__(
        self, api_pid: int, load, groups: dict[str, tuple[list[int], bool]], every: float = 0.2
    ):
        super().__init__(name="monitor", daemon=True)
        self.api_pid = api_pid
        self.load = load
        self.groups = groups
        self.every = every
        self.stopped = threading.Event()
        self.samples: list[dict] = []

    def run(self) -> None:
        import psycopg

        with psycopg.connect(DB.admin_url, autocommit=True) as conn:
            while not self.stopped.is_set():
                ours, everyone = conn.execute(
                    "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity",
                    [DB.name],
                ).fetchone()
                rss, processes = tree_rss(self.api_pid)
                self.samples.append(
                    {
                        "t": time.time(),
                        "rss": rss,
                        "api_processes": processes,
                        "connections": ours,
                        "all_connections": everyone,
                        "streams_open": self.load.streams_open,
                        "joins_open": self.load.joins_open,
                        "done": self.load.done,
                        "machine": machine_ticks(),
                        "cpu": {
                            name: sum(tree_cpu_seconds(p, tree=tree) for p in pids)
                            for name, (pids, tree) in self.groups.items()
                        },
                    }
                )
                self.stopped.wait(self.every)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


# ----------------------------------------------------------------- load


class Load:
    """The streams and joins, their outcomes and how many are open."""

    def __init__(self) -> None:
        self.streams_open = 0
        self.joins_open = 0
        self.peak_streams = 0
        self.peak_joins = 0
        self.outcomes: dict[str, Counter] = {"stream": Counter(), "join": Counter()}
        self.durations: dict[str, list[float]] = {"stream": [], "join": []}
        self.done = 0  # streams and joins ended, well or not
        self.started = time.time()
        self.failures: list[str] = []  # what each failure was, what a stream got
        # Seconds each step took: a stream's first event and its end, a join's
        # threads.create, runs.create and the join itself.
        self.steps: dict[str, list[float]] = {}

    def _step(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.steps.setdefault(name, []).append(now - since)
        return now

    def _fail(self, kind: str, exc: BaseException, began: float, step: str) -> None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = f"HTTP {status}" if status else type(exc).__name__
        self.outcomes[kind][reason] += 1
        cause = exc.__cause__ or exc.__context__
        self.failures.append(
            f"{kind}, {step}, after {time.perf_counter() - began:.1f} s "
            f"(at {time.time() - self.started:.1f} s): {reason} {exc!r:.200}"
            + (f" from {cause!r:.200}" if cause is not None else "")
        )

    async def stream(self, client, delay: float) -> None:
        await asyncio.sleep(delay)
        began = time.perf_counter()
        opened = False
        last_values = None
        error = None
        received = []
        try:
            async for part in client.runs.stream(None, "slow", input=INPUT, stream_mode="values"):
                if not opened:
                    opened = True
                    self._step("stream: first event", began)
                    self.streams_open += 1
                    self.peak_streams = max(self.peak_streams, self.streams_open)
                received.append(
                    f"{part.event} {part.data.get('run_id', '')}"
                    if part.event == "metadata"
                    else f"{part.event} ({len((part.data or {}).get('messages', []))} messages)"
                    if part.event == "values"
                    else part.event
                )
                if part.event == "values":
                    last_values = part.data
                elif part.event == "error":
                    error = part.data
        except Exception as exc:  # noqa: BLE001 - counted
            self._fail("stream", exc, began, f"after {len(received)} events")
            return
        finally:
            self.done += 1
            if opened:
                self.streams_open -= 1
        if error is not None or not answered(last_values):
            self.outcomes["stream"]["error event" if error is not None else "no answer"] += 1
            self.failures.append(
                f"stream, after {time.perf_counter() - began:.1f} s "
                f"(at {time.time() - self.started:.1f} s), received: {', '.join(received)}"
            )
        else:
            self.outcomes["stream"]["ok"] += 1
            self.durations["stream"].append(time.perf_counter() - began)
            self._step("stream: whole", began)

    async def join(self, client, delay: float) -> None:
        await asyncio.sleep(delay)
        began = time.perf_counter()
        joined = False
        step = "threads.create"
        try:
            thread = await client.threads.create()
            since = self._step("join: threads.create", began)
            step = "runs.create"
            run = await client.runs.create(thread["thread_id"], "slow", input=INPUT)
            since = self._step("join: runs.create", since)
            step = "runs.join"
            joined = True
            self.joins_open += 1
            self.peak_joins = max(self.peak_joins, self.joins_open)
            result = await client.runs.join(thread["thread_id"], run["run_id"])
            self._step("join: runs.join", since)
        except Exception as exc:  # noqa: BLE001 - counted
            self._fail("join", exc, began, step)
            return
        finally:
            self.done += 1
            if joined:
                self.joins_open -= 1
        if answered(result):
            self.outcomes["join"]["ok"] += 1
            self.durations["join"].append(time.perf_counter() - began)
        else:
            self.outcomes["join"]["no answer"] += 1

    async def run(
        self,
        url: str,
        streams: int,
        joins: int,
        clients: int,
        ramp: float,
        keepalive_expiry: float,
    ) -> float:
        """Every stream and join, started over `ramp` s; seconds to the last answer."""
        total = streams + joins
        share = math.ceil(total / clients)
        pool = [sdk_client(url, share + 8, keepalive_expiry) for _ in range(clients)]
        kinds = []
        for i in range(max(streams, joins)):
            if i < streams:
                kinds.append(self.stream)
            if i < joins:
                kinds.append(self.join)
        began = time.perf_counter()
        self.started = time.time()
        await asyncio.gather(
            *(kind(pool[i % clients], ramp * i / total) for i, kind in enumerate(kinds))
        )
        seconds = time.perf_counter() - began
        for client in pool:
            await client.aclose()
        return seconds


async def warm_up(url: str, runs: int) -> None:
    """Every API and worker process has served a run (graph loaded, pools
    open) before anything is measured."""
    client = sdk_client(url, runs + 4)
    results = await asyncio.gather(
        *(client.runs.wait(None, "slow", input=INPUT) for _ in range(runs)),
        *(client.crons.count() for _ in range(runs)),
    )
    await client.aclose()
    if not all(answered(r) for r in results[:runs]):
        raise RuntimeError(f"warm-up runs did not answer: {results[:runs]!r}")


# ----------------------------------------------------------------- processes


class Topology:
    """The API (`manage.py serve`) and the workers, as the deployment starts them."""

    def __init__(self, args, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.logs = []

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANG")}
        env.update(
            LANG="C.UTF-8",
            CRONSVC_DATA_DIR=str(self.workdir),
            CRONSVC_ALLOW_ANONYMOUS="true",
            WEB_CONCURRENCY=str(self.args.api_workers),
            CELERY_WORKER_CONCURRENCY=str(self.args.concurrency),
            SLOW_GRAPH_SECONDS=str(self.args.run_seconds),
        )
        if self.args.stateless_grace is not None:
            env["CRONSVC_STATELESS_THREAD_GRACE"] = f"{self.args.stateless_grace:g}"
        if self.args.server_keepalive is not None:
            # Read by gunicorn beside its command line (which does not set it).
            env["GUNICORN_CMD_ARGS"] = f"--keep-alive {self.args.server_keepalive:g}"
        return env

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
        self.logs.append(log)
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def start(self) -> None:
        from cronsvc.topology import API, WORKER, local_argv

        self.api = self._start("api", [*local_argv(API), "--bind", f"127.0.0.1:{self.port}"])
        for i in range(self.args.workers):
            self._start(
                f"worker{i + 1}",
                [
                    *local_argv(WORKER),
                    "-n",
                    f"waitbench{i + 1}@%h",
                    "-Q",
                    os.environ["CELERY_QUEUE"],
                ],
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: see {self.workdir / name}.log")
            try:
                if httpx.get(self.url + "/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API is not ready in {timeout} s: {self.workdir / 'api.log'}")

    def stop(self) -> None:
        # SIGTERM to each process group (warm: workers finish, gunicorn drains),
        # then SIGKILL to what is left.
        for _, proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        for _, proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self.logs:
            log.close()


# ----------------------------------------------------------------- report


def probe_stats(samples: list, kind: str, start: float, end: float) -> dict:
    window = [s for s in samples if s[0] == kind and start <= s[1] <= end]
    ms = [s[2] for s in window if s[3]]
    return {
        "n": len(window),
        "failed": sum(not s[3] for s in window),
        "p50": pct(ms, 50),
        "p99": pct(ms, 99),
        "max": max(ms, default=float("nan")),
    }


def timeline(monitor: list[dict], probes: list, first: dict, last: dict, bucket: float) -> str:
    """The load second by second (per `bucket`): requests open and done at
    the bucket's end, the probes' median and worst, the CPU of each group (%
    of a core), of the machine and of everything else on it (other users'
    processes, Redis)."""
    points = [s for s in monitor if first["t"] <= s["t"] <= last["t"]]
    names = list(first["cpu"])
    head = ["s", "streams open", "joins open", "done", "/ok p50/max ms", "count p50/max ms"]
    head += [f"{n} CPU" for n in names] + ["machine", "everything else"]
    rows = [head]
    start = previous = first
    edge = first["t"] + bucket
    for point in points[1:]:
        if point["t"] < edge and point is not points[-1]:
            continue
        span = point["t"] - previous["t"]
        busy = point["machine"][0] - previous["machine"][0]
        total = max(1, point["machine"][1] - previous["machine"][1])
        cells = [f"{point['t'] - start['t']:.0f}"]
        cells += [str(point["streams_open"]), str(point["joins_open"]), str(point["done"])]
        for kind in ("ok", "count"):
            ms = [p[2] for p in probes if p[0] == kind and previous["t"] <= p[1] < point["t"]]
            cells.append(f"{pct(ms, 50):.0f}/{max(ms, default=float('nan')):.0f}")
        ours = [100 * (point["cpu"][n] - previous["cpu"][n]) / span for n in names]
        machine = 100 * (os.cpu_count() or 1) * busy / total
        cells += [f"{v:.0f}%" for v in ours]
        cells += [f"{machine:.0f}%", f"{max(0.0, machine - sum(ours)):.0f}%"]
        rows.append(cells)
        previous = point
        edge = point["t"] + bucket
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    lines = [f"| {'measure'.ljust(width)} | {'value'.ljust(value)} |"]
    lines.append(f"|{'-' * (width + 2)}|{'-' * (value + 2)}|")
    lines += [f"| {a.ljust(width)} | {b.ljust(value)} |" for a, b in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500, help="open run streams")
    parser.add_argument("--joins", type=int, default=500, help="runs.join calls")
    parser.add_argument("--clients", type=int, default=8, help="async SDK clients sharing them")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="threads per worker")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--run-seconds", type=float, default=1.0, help="the slow graph's wait")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which to start them")
    parser.add_argument("--probe-every", type=float, default=0.05)
    parser.add_argument(
        "--keepalive-expiry",
        type=float,
        default=KEEPALIVE_EXPIRY,
        help="seconds the load's clients keep an idle connection (httpx's default: 5)",
    )
    parser.add_argument(
        "--server-keepalive",
        type=float,
        default=None,
        help="the API's keep-alive (s), through GUNICORN_CMD_ARGS (default: the "
        "deployment's, gunicorn's 2 s)",
    )
    parser.add_argument(
        "--stateless-grace",
        type=float,
        default=None,
        help="CRONSVC_STATELESS_THREAD_GRACE (s) for every process (default: the setting's, 2)",
    )
    parser.add_argument("--bucket", type=float, default=5.0, help="timeline step (s)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds probed before the load")
    parser.add_argument(
        "--postgres",
        choices=["private", "shared"],
        default="private",
        help="private: a server of the benchmark's own (max_connections --max-connections); "
        "shared: BENCH_ADMIN_URL's (loopback's by default)",
    )
    parser.add_argument("--max-connections", type=int, default=200)
    parser.add_argument(
        "--load-nice",
        type=int,
        default=0,
        help="niceness of the load's SDK clients (this process's load thread, and its "
        "scheduling group when it leads its session: run under `setsid -w`; the prober "
        "keeps 0): on a deployment the clients are other machines",
    )
    parser.add_argument(
        "--probe-nice",
        type=int,
        default=0,
        help="niceness of the prober (negative needs root): separates the server's latency "
        "from the prober's own wait for a core on a saturated host",
    )
    parser.add_argument(
        "--pg-top",
        type=int,
        default=0,
        help="print the N statements that took the private PostgreSQL most time during the "
        "load (pg_stat_statements), to find where its CPU goes",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    private = None
    if args.postgres == "private":
        private = PrivatePostgres(args.max_connections, statements=args.pg_top > 0)
        DB.admin_url = private.start()
        os.environ["DATABASE_URL"] = DB.admin_url.rsplit("/", 1)[0] + "/" + DB.name
    try:
        return measure(args, started, private)
    finally:
        if private is not None:
            private.stop()


def measure(args, started: float, private: PrivatePostgres | None) -> int:
    DB.recreate()
    from django.conf import settings
    from django.db import connection

    from cronsvc.topology import connection_budget

    with connection.cursor() as cursor:
        cursor.execute("SHOW max_connections")
        max_connections = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname IS DISTINCT FROM %s", [DB.name]
        )
        others_at_start = cursor.fetchone()[0]
    connection.close()  # the monitor counts this database's connections: not ours
    pool_size = settings.CRONSVC_CHECKPOINTER_POOL_SIZE
    budget = connection_budget(
        workers=args.workers,
        concurrency=args.concurrency,
        web_workers=args.api_workers,
        web_threads=settings.CRONSVC_WEB_THREADS,
        pool_size=pool_size,
        offloop_threads=settings.CRONSVC_OFFLOOP_THREADS,
    )
    share = math.ceil((args.streams + args.joins) / args.clients)
    where = "a private server" if args.postgres == "private" else DB.admin_url.rsplit("/", 1)[0]
    print(
        f"waiting load — {args.streams} streams + {args.joins} joins on `slow` runs of "
        f"{args.run_seconds:g} s; API `manage.py serve`, {args.api_workers} uvicorn workers "
        f"(offloop {settings.CRONSVC_OFFLOOP_THREADS}, web threads {settings.CRONSVC_WEB_THREADS}, "
        f"CRONSVC_MAX_OPEN_STREAMS {settings.CRONSVC_MAX_OPEN_STREAMS} per process); "
        f"{args.workers} workers × {args.concurrency} threads = "
        f"{args.workers * args.concurrency} slots; {args.clients} SDK clients × "
        f"{share + 8} connections (kept alive {args.keepalive_expiry:g} s), "
        f"timeout {CLIENT_TIMEOUT} (connect, read, write, pool); "
        f"ramp {args.ramp:g} s; server keep-alive "
        f"{'2 (gunicorn default)' if args.server_keepalive is None else f'{args.server_keepalive:g}'} s; "
        f"stateless thread grace "
        f"{'2 (default)' if args.stateless_grace is None else f'{args.stateless_grace:g}'} s; "
        f"PostgreSQL: {where}, max_connections {max_connections}; "
        f"{os.cpu_count()} cores, load average {loadavg()}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="cronsvc-waiting-bench-"))
    topology = Topology(args, workdir)
    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    receive, send = spawn.Pipe(duplex=False)
    probe = None
    monitor = None
    load = Load()
    try:
        topology.start()
        asyncio.run(warm_up(topology.url, 2 * (args.workers + args.api_workers)))
        print(f"ready: {topology.url} (logs in {workdir})", flush=True)
        if args.pg_top and private is not None:
            statements_reset()
        probe = spawn.Process(
            target=prober, args=(topology.url, args.probe_every, stop, send, args.probe_nice)
        )
        probe.start()
        groups = {
            "API": ([topology.api.pid], True),
            "workers": ([p.pid for name, p in topology.procs if name != "api"], True),
            # The SDK clients' process (its own threads only: the servers are
            # its children) and the prober.
            "benchmark": ([os.getpid(), probe.pid], False),
        }
        if private is not None:
            groups["PostgreSQL"] = ([private.pid()], True)
        monitor = Monitor(topology.api.pid, load, groups)
        monitor.start()
        time.sleep(args.idle)
        idle_end = time.time()
        rss_before = sum(s["rss"] for s in monitor.samples[-3:]) / len(monitor.samples[-3:])
        ticks_before, load_before = machine_ticks(), loadavg()
        load_start = time.time()
        if args.load_nice:
            # This thread runs the load's clients: on a deployment they are
            # other machines, here they share the 2 cores with what they load.
            os.nice(args.load_nice)
            load_group_nice(args.load_nice)
        wall = asyncio.run(
            load.run(
                topology.url,
                args.streams,
                args.joins,
                args.clients,
                args.ramp,
                args.keepalive_expiry,
            )
        )
        load_end = time.time()
        ticks_after = machine_ticks()
        # Busy share of all the cores' ticks over the load (times the cores).
        machine_pct = (
            100
            * (os.cpu_count() or 1)
            * (ticks_after[0] - ticks_before[0])
            / max(1, ticks_after[1] - ticks_before[1])
        )
        load_after = loadavg()
        time.sleep(0.5)
    finally:
        stop.set()
        samples = receive.recv() if probe is not None and receive.poll(60) else []
        if probe is not None:
            probe.join(30)
        if monitor is not None:
            monitor.stop()
        topology.stop()

    during = [s for s in monitor.samples if load_start <= s["t"] <= load_end]
    first = max((s for s in monitor.samples if s["t"] <= load_start), key=lambda s: s["t"])
    last = min((s for s in monitor.samples if s["t"] >= load_end), key=lambda s: s["t"])
    span = last["t"] - first["t"]
    busiest = max(during, key=lambda s: (s["streams_open"] + s["joins_open"], s["t"]))
    most_streams = max(during, key=lambda s: (s["streams_open"], s["joins_open"]))

    def per_request(sample: dict) -> str:
        """The API's RSS growth over the open requests of this sample."""
        opened = sample["streams_open"] + sample["joins_open"]
        return f"{(sample['rss'] - rss_before) / opened / 1024:.0f} KiB" if opened else "n/a"

    peak_connections = max(s["connections"] for s in monitor.samples)
    peak_all = max(s["all_connections"] for s in monitor.samples)
    ok = {k: load.outcomes[k]["ok"] for k in ("stream", "join")}
    failures = {
        k: {r: n for r, n in load.outcomes[k].items() if r != "ok"} for k in ("stream", "join")
    }
    idle = {k: probe_stats(samples, k, 0, idle_end) for k in ("ok", "count", "lag")}
    busy = {k: probe_stats(samples, k, load_start, load_end) for k in ("ok", "count", "lag")}
    mb = 1024 * 1024

    def probe_row(s: dict) -> str:
        text = f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms ({s['n']} probes"
        return text + (f", {s['failed']} failed)" if s["failed"] else ")")

    def duration(k: str) -> str:
        return f"{pct(load.durations[k], 50):.1f} s ({max(load.durations[k], default=0):.1f})"

    def failed_text(k: str) -> str:
        return ", ".join(f"{r} ×{n}" for r, n in failures[k].items()) or "none"

    rows = [
        (
            "streams completed / failed",
            f"{ok['stream']} / {args.streams - ok['stream']} ({failed_text('stream')})",
        ),
        (
            "joins completed / failed",
            f"{ok['join']} / {args.joins - ok['join']} ({failed_text('join')})",
        ),
        ("peak open streams / joins (client side)", f"{load.peak_streams} / {load.peak_joins}"),
        ("wall time, first request to last answer", f"{wall:.1f} s"),
        ("stream / join duration p50 (max)", f"{duration('stream')} / {duration('join')}"),
        *(
            (f"  {name} p50 / p99 / max", f"{pct(v, 50):.2f} / {pct(v, 99):.2f} / {max(v):.2f} s")
            for name, v in sorted(load.steps.items())
        ),
        ("/ok idle p50 / p99 / max", probe_row(idle["ok"])),
        ("/ok under load p50 / p99 / max", probe_row(busy["ok"])),
        ("crons.count idle p50 / p99 / max", probe_row(idle["count"])),
        ("crons.count under load p50 / p99 / max", probe_row(busy["count"])),
        ("the prober's own loop lag, idle p50 / p99 / max", probe_row(idle["lag"])),
        ("the prober's own loop lag, under load", probe_row(busy["lag"])),
        (
            f"API RSS ({busiest['api_processes']} processes) before / at most open",
            (
                f"{rss_before / mb:.0f} MB / {busiest['rss'] / mb:.0f} MB "
                f"({busiest['streams_open']} streams + {busiest['joins_open']} joins open)"
            ),
        ),
        (
            "API memory per open stream or join",
            per_request(busiest),
        ),
        (
            "the same at the most open streams",
            (
                f"{per_request(most_streams)} ({most_streams['streams_open']} streams + "
                f"{most_streams['joins_open']} joins open, RSS {most_streams['rss'] / mb:.0f} MB)"
            ),
        ),
        ("API RSS at most during the load", f"{max(s['rss'] for s in during) / mb:.0f} MB"),
        (
            "peak PostgreSQL connections (bench db)",
            f"{peak_connections} (budget {budget}, max_connections {max_connections})",
        ),
        (
            "peak connections, all databases",
            f"{peak_all} (other databases at start: {others_at_start})",
        ),
        ("machine CPU during the load", f"{machine_pct:.0f}% of {100 * (os.cpu_count() or 1)}%"),
        (
            "CPU during the load, % of one core",
            ", ".join(
                f"{name} {100 * (last['cpu'][name] - first['cpu'][name]) / span:.0f}%"
                for name in first["cpu"]
            ),
        ),
        ("load average before / after the load", f"{load_before} / {load_after}"),
    ]
    print()
    print(table(rows))
    print()
    print(timeline(monitor.samples, samples, first, last, args.bucket))
    if args.pg_top and private is not None:
        print(statements_top(args.pg_top))
    if load.failures:
        print("\nfailures (the first 10 of streams and of joins):")
        for kind in ("stream", "join"):
            for text in [f for f in load.failures if f.startswith(kind)][:10]:
                print(f"  {text}")
    if load.outcomes["stream"]["no answer"]:
        print(
            "\nA stream that ends after `metadata` (and perhaps the input's `values`), without "
            "error, lost its run: a stateless run's thread (and its events) is deleted "
            "CRONSVC_STATELESS_THREAD_GRACE (2 s) after the run ends, and a relay that reads "
            "later than that sees the run gone and ends the stream (runs/streaming.py). "
            "Try --stateless-grace 60."
        )
    print(f"\n(whole benchmark: {time.monotonic() - started:.0f} s)")
    complete = ok["stream"] == args.streams and ok["join"] == args.joins
    if complete:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"not all completed: the servers' logs are in {workdir}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
