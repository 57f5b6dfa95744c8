"""The access log written by a thread of its own, not by the event loop.

uvicorn writes each response's access-log line from the event loop, through
the handlers gunicorn (`manage.py serve`) or uvicorn's own logging config put
on the `uvicorn.access` logger: a blocking write to stdout, a pipe or a file.
On a saturated machine whose disk the database also flushes to, such a write
stalled the loop of an API process for 150-350 ms (found with a loop-lag
probe in the waiting benchmark, bench/waiting_load.py), and every request of
that process with it. Here those handlers move behind a queue that one
thread empties, in order (logging.handlers.QueueListener): the loop only
appends the record.

Records cross unformatted (uvicorn's access formatter reads the record's
arguments), and what is still queued is written when the process exits."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue

ACCESS_LOGGER = "uvicorn.access"


class _Handoff(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # formatted by the handlers behind the queue


class _Listener(logging.handlers.QueueListener):
    def stop(self) -> None:
        if self._thread is not None:  # once: at exit, or earlier
            super().stop()


def offload(name: str = ACCESS_LOGGER) -> logging.handlers.QueueListener | None:
    """Move the handlers of logger `name` behind a queue and a thread of their
    own; None when it has none (nothing is written synchronously then
    either) or they are moved already."""
    logger = logging.getLogger(name)
    handlers = list(logger.handlers)
    if not handlers or any(isinstance(h, _Handoff) for h in handlers):
        return None
    records: queue.SimpleQueue = queue.SimpleQueue()
    listener = _Listener(records, *handlers, respect_handler_level=True)
    logger.handlers = [_Handoff(records)]
    listener.start()
    atexit.register(listener.stop)
    return listener
