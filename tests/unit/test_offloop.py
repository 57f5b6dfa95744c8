"""cronsvc.offloop: work handed to the bounded executor and not awaited still
reports its failure (a cancel on disconnect that fails must not vanish)."""

import logging
import threading

from cronsvc import offloop


def test_a_submitted_call_that_fails_is_logged(caplog):
    done = threading.Event()

    def fails() -> None:
        try:
            raise RuntimeError("the database went away")
        finally:
            done.set()

    with caplog.at_level(logging.ERROR, logger="cronsvc.offloop"):
        offloop.submit(fails)
        assert done.wait(5)
        offloop.executor().submit(lambda: None).result(5)  # the callback has run by now
        for _ in range(50):
            if caplog.records:
                break
            threading.Event().wait(0.02)

    (record,) = caplog.records
    assert "fails failed off the loop" in record.getMessage()
    assert record.exc_info[1].args == ("the database went away",)
