"""A worker process takes CRONSVC_WORKER_NICE as it starts, and so do the
threads its pool runs the graphs on: on a saturated machine the API and beat
keep their CPU."""

from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def niceness(pid: int, tid: int | None = None) -> int:
    stat = Path(f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat").read_text()
    # Field 19 (nice), counted after the command's closing parenthesis.
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_a_worker_and_its_threads_take_the_configured_niceness(tmp_path):
    assert settings.CRONSVC_WORKER_NICE == 5  # the default
    proc = start_worker(tmp_path, "nice", concurrency=2, CRONSVC_WORKER_NICE="7")
    try:
        pid = proc.popen.pid
        tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        assert len(tids) > 2  # the pool's threads are up ("ready.")
        assert {niceness(pid, tid) for tid in tids} == {7}
    finally:
        proc.stop()
