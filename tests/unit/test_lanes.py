"""The web threads' queue (cronsvc.http.lanes): earliest deadline first."""

import threading

import pytest

from cronsvc.http import lanes
from cronsvc.http.lanes import HEALTH, READ, WRITE, LaneExecutor, lane_of


@pytest.mark.parametrize(
    ("method", "path", "lane"),
    [
        ("GET", "/ok", HEALTH),
        ("GET", "/health", HEALTH),
        ("GET", "/metrics", HEALTH),
        ("GET", "/info", HEALTH),
        ("GET", "/runs/crons/0b7e5d0e-1f1d-4f43-9b1e-8c1f1f7b8a11", READ),
        ("POST", "/runs/crons/count", READ),
        ("POST", "/threads/search", READ),
        ("POST", "/runs/crons", WRITE),
        ("PATCH", "/runs/crons/0b7e5d0e-1f1d-4f43-9b1e-8c1f1f7b8a11", WRITE),
        ("DELETE", "/threads/0b7e5d0e-1f1d-4f43-9b1e-8c1f1f7b8a11", WRITE),
    ],
)
def test_lane_of(method, path, lane):
    assert lane_of(method, path) == lane


def run_queued(pool: LaneExecutor, jobs: list[tuple[str, int]]) -> list[str]:
    """Block the pool's one thread, queue `jobs` (name, lane), release it:
    the order the queue hands them out."""
    started, release, order = threading.Event(), threading.Event(), []

    def block():
        started.set()
        release.wait(10)

    first = pool.submit(block, lane=WRITE)
    assert started.wait(10)
    futures = [pool.submit(order.append, name, lane=lane) for name, lane in jobs]
    release.set()
    first.result(10)
    for future in futures:
        future.result(10)
    return order


def test_health_and_reads_pass_queued_writes_which_keep_their_order():
    pool = LaneExecutor(1)
    try:
        jobs = [("w1", WRITE), ("w2", WRITE), ("r1", READ), ("w3", WRITE), ("ok", HEALTH)]
        assert run_queued(pool, jobs) == ["r1", "ok", "w1", "w2", "w3"]
    finally:
        pool.shutdown()


def test_a_write_past_its_allowance_goes_before_later_reads(monkeypatch):
    monkeypatch.setitem(lanes._ALLOWANCE, WRITE, -1.0)  # as if it had waited past it
    pool = LaneExecutor(1)
    try:
        assert run_queued(pool, [("w1", WRITE), ("r1", READ)]) == ["w1", "r1"]
    finally:
        pool.shutdown()


def test_results_errors_threads_and_shutdown():
    pool = LaneExecutor(3, thread_name_prefix="t")
    assert pool.submit(lambda a, b=0: a + b, 1, b=2).result(10) == 3
    failed = pool.submit(lambda: 1 / 0, lane=WRITE)
    with pytest.raises(ZeroDivisionError):
        failed.result(10)
    names = {pool.submit(lambda: threading.current_thread().name).result(10) for _ in range(20)}
    assert names and all(name.startswith("t_") for name in names)
    assert len(pool._threads) <= 3
    pool.shutdown(wait=True)
    assert not any(thread.is_alive() for thread in pool._threads)
    with pytest.raises(RuntimeError):
        pool.submit(print)
