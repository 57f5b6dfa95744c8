"""Linux's autogroups (sched_autogroup, on in most distributions): the
scheduler weighs one group per session against the others before the tasks
in each, so a niceness orders a process against other sessions only as its
group's. A process that leads its session (a worker under `manage.py runall`,
the benchmarks' roles) renices its group with `renice_own_group`."""

from __future__ import annotations

import os
from pathlib import Path

_GROUP = Path("/proc/self/autogroup")


def renice_own_group(nice: int) -> str | None:
    """Give this process's scheduling group niceness `nice` (negative needs
    privilege) when the process leads its session; the group as /proc shows
    it then ("/autogroup-85 nice 5"). None, and nothing changed, when it
    shares its session (it would renice its neighbours), when it is in no
    group of its own (the file is empty: a session that goes back to init's)
    or without autogroups."""
    if os.getsid(0) != os.getpid():
        return None
    try:
        if not _GROUP.read_text().strip():
            return None
        _GROUP.write_text(str(nice))
        return _GROUP.read_text().strip()
    except OSError:  # a kernel without autogroups, or no privilege
        return None
