"""The ASGI handler every server runs (cronsvc.asgi): Django's, with one hop to
a thread per request for the sync views.

Under Django's own ASGI handler a sync view costs four hops between the event
loop and threads (the request_started signal, the view, rendering DRF's
response, closing it) and a new thread per request: ~2 ms of a request whose
work takes 0.6 ms. Here a request for a sync view (every view but the waiting
ones: wait, join, streams) has its body read on the loop, then runs whole —
signals, middleware in its sync form, view, rendering, closing — on one of
CRONSVC_WEB_THREADS threads (so the sync requests in flight are bounded, as
`cronsvc.topology.connection_budget` counts them), taken earliest deadline
first (health checks and reads before a burst of writes: cronsvc.http.lanes),
and its response leaves from the loop. Async views and static files take Django's own path,
without its ThreadSensitiveContext: under it each request started a thread of
its own for its signals (request_started, request_finished), which have no
connection to close on it, and the loop waited for every one to start (a
burst of 500 streams on a saturated machine: stalls of 150-350 ms). Their
sync calls share asgiref's one thread instead. The threads an API process
uses are started with it (`Handler.__init__`); what needs the server's
database (the run listener: `on_startup`) starts with the server, at the
ASGI lifespan's startup."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Iterable

from asgiref.sync import SyncToAsync, iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import HttpResponseBase
from django.urls import Resolver404, ResolverMatch, resolve, set_script_prefix

from cronsvc import offloop
from cronsvc.http.lanes import HEALTH, LaneExecutor, lane_of


class _ResolvedOnce:
    """Each path resolved once (`_resolved`) instead of matched against every
    URL pattern per request (~10% of a count's time; on the loop, for the
    waiting views, ~2% of its work under the waiting benchmark)."""

    def resolve_request(self, request):
        match = None if hasattr(request, "urlconf") else _resolved(request.path_info)
        if match is None:  # a per-request urlconf, or a 404: Django's way
            return super().resolve_request(request)  # type: ignore[misc]
        request.resolver_match = match
        return match


class Handler(_ResolvedOnce, ASGIHandler):
    def __init__(self, on_startup: Iterable[Callable[[], None]] = ()) -> None:
        super().__init__()
        self._on_startup = tuple(on_startup)
        self._sync = _SyncHandler()
        self._sync.load_middleware(is_async=False)
        # Earliest deadline first, not arrival order: the health check and
        # reads are not queued behind a burst of writes (cronsvc.http.lanes).
        self._threads = LaneExecutor(settings.CRONSVC_WEB_THREADS, thread_name_prefix="web")
        self._static = "/" + settings.STATIC_URL.lstrip("/")
        self._threads.start_all()
        offloop.start_all()
        SyncToAsync.single_thread_executor.submit(int).result(30)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            await super().__call__(scope, receive, send)  # Django's refusal
        elif self._in_thread(scope["path"]):
            await self._handle_in_thread(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        """The server's start and stop (ASGI lifespan). `on_startup` runs at
        the start, not in __init__: the application may be built before the
        database it will serve is chosen (pytest imports it before setting
        up the test database), and what it starts (the run listener, one
        connection per process) stays on the database it found then. Each
        hook is cheap and starts its own thread if it needs one."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self._on_startup:
                    hook()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _in_thread(self, path: str) -> bool:
        return not path.startswith(self._static) and _sync_view(path)

    async def _handle_in_thread(self, scope, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        context = contextvars.copy_context()
        lane = lane_of(scope["method"], scope["path"])
        response = await asyncio.wrap_future(
            self._threads.submit(context.run, self._respond, scope, body_file, lane=lane)
        )
        try:
            await self.send_response(response, send)
        except asyncio.CancelledError:
            pass  # the client left while the response was being sent
        finally:
            if response.streaming:
                await asyncio.wrap_future(
                    self._threads.submit(_close, response, body_file, lane=HEALTH)
                )

    def _respond(self, scope, body_file) -> HttpResponseBase:
        """The whole request on this thread, as Django's WSGI handler runs it."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            response = error_response
        else:
            response = self._sync.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
        if not response.streaming:
            # The body is in memory: the request ends here (request_finished
            # gives this thread's connection back), before it is sent.
            _close(response, body_file)
        return response


class _SyncHandler(_ResolvedOnce, BaseHandler):
    """Django's handler, for the sync views' threads."""


def _close(response: HttpResponseBase, body_file) -> None:
    response.close()
    body_file.close()


@functools.lru_cache(maxsize=4096)
def _resolved(path: str) -> ResolverMatch | None:
    """The path's match (None: not found), shared by its requests (read only:
    Django hands a view copies of its arguments)."""
    try:
        return resolve(path)
    except Resolver404:
        return None


def _sync_view(path: str) -> bool:
    match = _resolved(path)
    return match is None or not iscoroutinefunction(match.func)  # the 404 view is sync
