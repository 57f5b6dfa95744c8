"""A worker process takes CRONSVC_WORKER_NICE as it starts, and so do the
threads its pool runs the graphs on: on a saturated machine the API and beat
keep their CPU. In a session of its own (as `manage.py runall` starts it) it
renices its session's scheduling group too: Linux weighs those groups against
each other before the tasks in them."""

import os
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


def autogroup(pid: int) -> str:
    # "/autogroup-85 nice 0"; empty for a process in no autogroup of its own
    # (one whose session goes back to init's, as under some CI runners).
    return Path(f"/proc/{pid}/autogroup").read_text().strip()


def autogroups_on() -> bool:
    # A kernel built without them has no file (or has them switched off).
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


@pytest.mark.skipif(not autogroups_on(), reason="a kernel without autogroups, or them off")
def test_a_worker_in_a_session_of_its_own_renices_its_scheduling_group(tmp_path):
    ours = autogroup(os.getpid())
    alone = start_worker(tmp_path, "alone", concurrency=2, session=True, CRONSVC_WORKER_NICE="7")
    shared = start_worker(tmp_path, "shared", concurrency=2, CRONSVC_WORKER_NICE="7")
    try:
        assert autogroup(alone.popen.pid).endswith(" nice 7")
        # Sharing this test's session: its group (and so this test's) is left as it was.
        assert autogroup(shared.popen.pid) == ours
        assert autogroup(os.getpid()) == ours
    finally:
        alone.stop()
        shared.stop()
