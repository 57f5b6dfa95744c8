"""The cyclic garbage collector in the long-lived processes (the API's,
a worker's).

What exists once such a process has started (Django and the apps, DRF,
Celery, LangGraph and its graphs: ~180,000 objects in the API) lives as long
as the process. A full collection walks every tracked object and stops every
thread of the process meanwhile, the API's event loop included: under 500
open streams the API's full collections took 250-450 ms each (the waiting
benchmark, bench/waiting_load.py). Frozen after the start (gc.freeze: moved
to a generation the collector never walks), they leave it the objects the
requests and runs create since: 80-150 ms under the same load.

Nothing frozen is lost: an object freed by its reference count is freed as
before; only a cycle among startup objects that becomes garbage later would
stay (none is expected: they live until the process exits)."""

from __future__ import annotations

import gc


def freeze_after_start() -> int:
    """Collect what the start left as garbage, then freeze the rest; the
    number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
