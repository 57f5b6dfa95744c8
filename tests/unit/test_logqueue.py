"""The access log leaves the event loop (cronsvc.logqueue): its handlers run on
a thread of their own, in order, with the record's arguments intact (uvicorn's
access formatter reads them), and what is queued is written at the stop."""

import logging
import threading

from cronsvc import logqueue


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[tuple[str, str]] = []
        self.setFormatter(ArgsFormatter())

    def emit(self, record):
        self.lines.append((threading.current_thread().name, self.format(record)))


class ArgsFormatter(logging.Formatter):
    """Reads record.args as a tuple, as uvicorn's AccessFormatter does."""

    def format(self, record):
        client, method, path, status = record.args
        return f"{client} {method} {path} {status}"


def test_the_access_log_is_written_by_a_thread_of_its_own_in_order():
    logger = logging.getLogger("cronsvc.tests.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    collect = Collect()
    logger.handlers = [collect]
    try:
        listener = logqueue.offload(logger.name)
        assert listener is not None
        assert logqueue.offload(logger.name) is None  # moved already
        for n in range(50):
            logger.info('%s - "%s %s" %d', "127.0.0.1:1", "GET", f"/ok?n={n}", 200)
        listener.stop()  # writes what is queued
        assert [line for _, line in collect.lines] == [
            f"127.0.0.1:1 GET /ok?n={n} 200" for n in range(50)
        ]
        assert threading.main_thread().name not in {name for name, _ in collect.lines}
    finally:
        logger.handlers = []


def test_a_logger_without_handlers_is_left_alone():
    assert logqueue.offload("cronsvc.tests.silent") is None
    assert logging.getLogger("cronsvc.tests.silent").handlers == []
