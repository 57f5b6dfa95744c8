"""runs.streaming.EventStreamResponse: when the server stops sending (the
client left while an event was on its way), the events' generator is closed
at once, its `finally` run (a run's cancel on disconnect, the stream's
registrations), not left to the garbage collector."""

import asyncio
import gc
from contextlib import aclosing

from runs.streaming import EventStreamResponse, StreamSlot


def test_the_events_generator_is_closed_when_the_response_stops_being_sent():
    closed = []

    async def events():
        try:
            yield b"event: metadata\n\n"
            yield b"event: values\n\n"
        finally:
            closed.append(True)

    async def send_like_django(response) -> tuple[list[bytes], list[bool]]:
        sent = []
        # As django.core.handlers.asgi.ASGIHandler.send_response consumes it;
        # the client goes away after the first event (the send is cancelled
        # while the generator waits at its yield).
        async with aclosing(aiter(response)) as content:
            async for part in content:
                sent.append(part)
                break
        for _ in range(3):
            await asyncio.sleep(0)  # any finalizer the loop scheduled has run
        # Read before the loop ends (asyncio.run closes every generator left then;
        # a server's loop lives on).
        return sent, list(closed)

    gc.disable()
    try:
        response = EventStreamResponse(StreamSlot.take(), events())
        sent, closed_then = asyncio.run(send_like_django(response))
        assert sent == [b"event: metadata\n\n"]
        assert closed_then == [True]  # the response still referenced, no collection run
    finally:
        gc.enable()
        response.close()
