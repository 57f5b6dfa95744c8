"""Fault soak: crons ticking every few seconds with two beats running at once
(one active, one standby), through each worker killed with SIGKILL (and
restarted), the active beat killed with SIGKILL (the standby takes over; the
killed one comes back as the standby), Redis restarted without persistence and
PostgreSQL crash-restarted (`pg_ctl stop -m immediate`); then a count per
(cron, instant): every due instant has exactly one tick, every fired tick
exactly one run that ended once with the graph's answer; none missing (beyond
recorded skips), none doubled, none stuck, none incomplete.

    .venv/bin/python bench/fault_soak.py             # ~300 ticks: 6 crons every 3 s for 150 s
    .venv/bin/python bench/fault_soak.py --small     # the CI size (~50 ticks)
    .venv/bin/python bench/fault_soak.py --crons 10 --every 2 --duration 600

It starts its own redis-server and its own PostgreSQL cluster (initdb in a
temporary directory, trust auth) on free ports, so both can be restarted
without disturbing anything else; with `--postgres URL` it uses a scratch
database on that server instead and does not restart it. Two beats and two
workers (threads pool) run the `slow` example graph. Exit status 0 when
nothing is missing, doubled or stuck.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict, logdir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log = logdir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        out = self.log.open("a")
        self.popen = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 30) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def wait_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not say {text!r}; see {self.log}")


class OwnPostgres:
    """A private PostgreSQL cluster on a free port that the soak may crash-restart."""

    def __init__(self, tmp: Path):
        initdb = shutil.which("initdb") or str(
            Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip()) / "initdb"
        )
        self.bindir = Path(initdb).resolve().parent
        self.port = free_port()
        self.data = tmp / "pgdata"
        self.logfile = tmp / "postgres.log"
        # initdb refuses to run as root: run the cluster as the postgres user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            tmp.chmod(0o755)
            self.data.mkdir()
            shutil.chown(self.data, "postgres", "postgres")
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres", "postgres")
        self._pg(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}"

    def _pg(self, argv: list[str]) -> None:
        program = str(self.bindir / argv[0])
        subprocess.run(
            [*self.as_user, program, *argv[1:]],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data} "
            "-c fsync=off -c max_connections=100"
        )
        self._pg(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "start"]
        )

    def crash_restart(self) -> None:
        """Stop without a checkpoint, as a crash does (recovery replays the WAL), and start."""
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        time.sleep(1)
        self.start()

    def stop(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])


def lease_holder_pid() -> int | None:
    """The pid of the beat holding the scheduler lease (holder is host:pid:nonce)."""
    from django.db import close_old_connections

    from crons.lease import LEASE_NAME
    from crons.models import SchedulerLease

    close_old_connections()
    holder = SchedulerLease.objects.filter(name=LEASE_NAME).values_list("holder", flat=True).first()
    return int(holder.split(":")[1]) if holder else None


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crons", type=int, default=6)
    parser.add_argument("--every", type=int, default=3, help="seconds between a cron's ticks")
    parser.add_argument("--duration", type=float, default=150, help="seconds the crons tick")
    parser.add_argument("--small", action="store_true", help="CI size: 4 crons every 2 s for 26 s")
    # Long enough that each worker has runs in flight when it is killed.
    parser.add_argument("--graph-seconds", type=float, default=1.5)
    parser.add_argument(
        "--postgres",
        help="use a scratch database on this server (not restarted) instead of a private cluster",
    )
    args = parser.parse_args()
    if args.small:
        args.crons, args.every, args.duration = 4, 2, 30

    tmp = Path(tempfile.mkdtemp(prefix="cronsvc-soak-"))
    own_postgres = None if args.postgres else OwnPostgres(tmp)
    if own_postgres is not None:
        args.postgres = own_postgres.url
    dbname = f"cronsvc_soak_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    redis_port = free_port()
    queue = f"soak-{uuid.uuid4().hex[:6]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CRONSVC_")},
        "DATABASE_URL": f"{args.postgres}/{dbname}",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CELERY_QUEUE": queue,
        "CRONSVC_DATA_DIR": str(tmp / "data"),
        "PYTHONUNBUFFERED": "1",
        "SLOW_GRAPH_SECONDS": str(args.graph_seconds),
        # Faults are noticed within seconds, not the production minute.
        "CRONSVC_RUN_LEASE_SECONDS": "3",
        "CRONSVC_REAP_INTERVAL": "1",
        "CRONSVC_RECONCILE_AFTER": "3",
        "CRONSVC_RECONCILE_INTERVAL": "1",
        "CRONSVC_BEAT_MAX_INTERVAL": "0.5",
        "CRONSVC_HEARTBEAT_INTERVAL": "2",
    }
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "cronsvc.settings"

    import psycopg

    with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    redis = None
    beats: list[Child] = []
    workers: list[Child] = []
    try:
        redis_argv = [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        redis = Child("redis", redis_argv, env, tmp)
        redis.wait_log("Ready to accept connections")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True
        )

        import django

        django.setup()

        from crons import firetime
        from crons.models import Cron, Tick
        from crons.services import cron_create, cron_update
        from cronsvc.selectors import assistant_get_or_404
        from runs.models import Run

        celery = [sys.executable, "-m", "celery", "-A", "cronsvc"]

        def worker(n: int) -> Child:
            return Child(
                f"worker{n}",
                [
                    *celery,
                    "worker",
                    "--pool=threads",
                    "--concurrency=4",
                    "-Q",
                    queue,
                    "-n",
                    f"soak{n}-{uuid.uuid4().hex[:4]}@%h",
                    "--loglevel=INFO",
                    "--without-gossip",
                    "--without-mingle",
                ],
                env,
                tmp,
            )

        def beat(n: int) -> Child:
            return Child(
                f"beat{n}",
                [
                    *celery,
                    "beat",
                    "-S",
                    "crons.scheduler:CronScheduler",
                    "-s",
                    str(tmp / f"beat{n}-schedule"),
                    "--loglevel=INFO",
                ],
                env,
                tmp,
            )

        workers = [worker(1), worker(2)]
        # Two beats at once, as by mistake or for high availability: the lease
        # lets one fire, the other waits as a standby.
        beats = [beat(1), beat(2)]
        for child in workers:
            child.wait_log("ready.")
        for child in beats:
            child.wait_log("beat: Starting")

        slow = assistant_get_or_404("slow")
        schedule = f"* * * * * */{args.every}"
        crons = [
            cron_create(
                assistant=slow,
                schedule=schedule,
                on_run_completed="keep",
                payload={"input": {"messages": [{"role": "user", "content": "tick"}]}},
            )
            for _ in range(args.crons)
        ]
        started = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        log(
            f"{args.crons} crons '{schedule}' for {args.duration:g} s; db {dbname}, redis :{redis_port}"
        )

        takeovers: list[float] = []
        killed_beat: list[Child] = []

        def kill_active_beat() -> None:
            active = lease_holder_pid()
            victim = next(b for b in beats if b.popen.pid == active)
            killed_beat.append(victim)
            victim.kill9()
            t = time.monotonic()
            while lease_holder_pid() in (active, None):
                if time.monotonic() - t > 60:
                    raise SystemExit("no standby beat took the lease within 60 s")
                time.sleep(0.1)
            takeovers.append(time.monotonic() - t)
            log(f"standby beat (pid {lease_holder_pid()}) took over in {takeovers[-1]:.1f} s")

        faults = [
            (0.15, "kill -9 worker1", lambda: workers[0].kill9()),
            (0.15 + 4 / args.duration, "restart worker1", lambda: workers[0].start()),
            (0.3, "kill -9 the active beat", kill_active_beat),
            (
                0.3 + 4 / args.duration,
                "restart the killed beat (now the standby)",
                lambda: killed_beat[0].start(),
            ),
            (
                0.5,
                "restart redis (no persistence: queued messages are lost)",
                lambda: (redis.stop(), time.sleep(1), redis.start()),
            ),
            (0.65, "kill -9 worker2", lambda: workers[1].kill9()),
            (0.65 + 4 / args.duration, "restart worker2", lambda: workers[1].start()),
        ]
        if own_postgres is not None:
            faults.append(
                (0.8, "crash-restart PostgreSQL (pg_ctl -m immediate)", own_postgres.crash_restart)
            )
        for at, what, do in faults:
            delay = t0 + at * args.duration - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            log(what)
            do()
        time.sleep(max(0.0, t0 + args.duration - time.monotonic()))

        from django.db import connections

        connections.close_all()  # this process's connection did not survive the restart
        stopped = dt.datetime.now(dt.UTC)
        for cron in crons:
            cron_update(cron=Cron.objects.get(pk=cron.pk), enabled=False)
        log("crons disabled; waiting for every run to end")
        deadline = time.monotonic() + 120
        while Run.objects.filter(status__in=["pending", "running"]).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)

        # Count per (cron, instant).
        missing = doubled = stuck = skipped = incomplete = 0
        statuses: Counter = Counter()
        attempts: Counter = Counter()
        expected_total = 0
        for cron in crons:
            instants = []
            after = started
            while True:
                after = firetime.next_fire(cron.schedule, cron.timezone, after)
                # An instant in the second before disabling may or may not have fired.
                if after > stopped - dt.timedelta(seconds=1):
                    break
                instants.append(after)
            expected_total += len(instants)
            ticks = Counter(Tick.objects.filter(cron=cron).values_list("scheduled_at", flat=True))
            runs = Counter(Run.objects.filter(cron=cron).values_list("scheduled_at", flat=True))
            recorded_skips = set(
                Tick.objects.filter(cron=cron)
                .exclude(status="fired")
                .values_list("scheduled_at", flat=True)
            )
            skipped += len(recorded_skips)
            for instant in instants:
                if ticks[instant] == 0 or (instant not in recorded_skips and runs[instant] == 0):
                    missing += 1
            doubled += sum(1 for n in ticks.values() if n > 1) + sum(
                1 for n in runs.values() if n > 1
            )
            for run in Run.objects.filter(cron=cron):
                statuses[run.status] += 1
                attempts[run.attempts] += 1
                if run.status in ("pending", "running"):
                    stuck += 1
                elif run.status == "success":
                    ai = [m for m in run.output["messages"] if m["type"] == "ai"]
                    if len(ai) > 1:
                        doubled += 1  # the graph ran to completion twice into its state
                    elif not ai:
                        incomplete += 1  # "success" without the graph's answer
        log(
            f"instants due {expected_total}, ticks {Tick.objects.filter(cron__in=crons).count()}, "
            f"runs {Run.objects.filter(cron__in=crons).count()}"
        )
        log(f"run statuses {dict(statuses)}, attempts {dict(sorted(attempts.items()))}")
        logs = "".join(p.read_text(errors="replace") for p in tmp.glob("*.log"))
        log(
            f"faults seen: runs reaped {logs.count('back to pending')}, "
            f"reconciler passes that woke workers {logs.count('for a worker; waking workers')}, "
            f"wake-ups the broker refused {logs.count('wake-up not published')}"
        )
        log(f"standby beat takeover after kill -9 of the active one: {takeovers[0]:.1f} s")
        log(f"successful runs without the graph's answer: {incomplete}")
        print(f"missing {missing}, doubled {doubled}, stuck {stuck}, skipped (recorded) {skipped}")
        return 0 if missing == doubled == stuck == incomplete == 0 else 1
    finally:
        for child in (*beats, *workers):
            child.stop()
        if redis is not None:
            redis.stop()
        from django.db import connections

        connections.close_all()
        from cronsvc import checkpointer

        checkpointer.reset()
        if own_postgres is not None:
            own_postgres.stop()
        else:
            with psycopg.connect(f"{args.postgres}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        print(f"logs: {tmp}")


if __name__ == "__main__":
    sys.exit(main())
