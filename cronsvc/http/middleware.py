"""Middleware of cronsvc's own. Every middleware in the stack is async-capable:
under ASGI one sync-only middleware would run the rest of the request, the
waiting views included, on a thread held for its whole duration."""

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import JsonResponse
from django.middleware import clickjacking, common, csrf, security
from whitenoise.middleware import WhiteNoiseMiddleware

from cronsvc import custom_auth


class AuthUserMiddleware:
    """Each request starts without a current user (cronsvc.custom_auth) and
    leaves none behind in its thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        token = custom_auth.set_current_user(None)
        try:
            return self.get_response(request)
        finally:
            custom_auth.reset_current_user(token)

    async def _acall(self, request):
        token = custom_auth.set_current_user(None)
        try:
            return await self.get_response(request)
        finally:
            custom_auth.reset_current_user(token)


class BodySizeLimitMiddleware:
    """Answer 413 for a body over CRONSVC_MAX_BODY_BYTES before anything reads it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        refused = _too_large(request)
        if self.is_async:
            return _answer(refused) if refused else self.get_response(request)
        return refused or self.get_response(request)


async def _answer(response):
    return response


def _too_large(request) -> JsonResponse | None:
    limit = settings.CRONSVC_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return JsonResponse(
            {"detail": f"Request body is {length} bytes; the limit is {limit} bytes."},
            status=413,
        )
    return None


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise (admin and /docs static files, straight from the installed
    packages), async-capable: under ASGI a file is opened off the event loop and
    its body leaves as an async iterator, read in chunks off the loop (Django
    would otherwise read a sync body whole and warn that "StreamingHttpResponse
    must consume synchronous iterators")."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings):
        super().__init__(get_response, settings=settings)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(
                request.path_info
            )
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        response = await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        if not response.is_async:
            response.streaming_content = _chunks(iter(response.streaming_content))
        return response


_END = object()


async def _chunks(iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(next, thread_sensitive=False)
    while (chunk := await read(iterator, _END)) is not _END:
        yield chunk  # type: ignore[misc]


# Django's own middleware, cheap under ASGI. Django's MiddlewareMixin makes a hop
# to a thread for every hook of every middleware (process_request,
# process_response, process_view: 13 hops per request with the admin's stack,
# ~4 ms of a request that takes 0.6 ms in-process). Those whose hooks only read
# and write the request and the response run on the event loop; those only the
# admin's session needs (sessions, login, messages, CSRF) run only on the paths
# that read it (_SESSION_PATHS).

# The paths that read a staff user's admin session: the admin itself, and the
# health and metrics details a logged-in staff user may see (cronsvc.health).
_SESSION_PATHS = ("/admin/", "/health", "/metrics")


def _admin(request) -> bool:
    return request.path_info.startswith(_SESSION_PATHS)


class _OnTheLoop:
    """Hooks called inline under ASGI: they touch no database and no file."""

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class _AdminOnly:
    """Skipped outside the admin (and the two paths that read its session): the
    API authenticates each request by its headers (cronsvc.http.auth), never
    by a session cookie."""

    def __call__(self, request):
        if not _admin(request) and not iscoroutinefunction(self):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]

    async def __acall__(self, request):
        if not _admin(request):
            return await self.get_response(request)
        return await super().__acall__(request)  # type: ignore[misc]


class SecurityMiddleware(_OnTheLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(_OnTheLoop, common.CommonMiddleware):
    pass


class XFrameOptionsMiddleware(_OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(_AdminOnly, sessions.SessionMiddleware):
    """Loads and saves the session (the database): a thread, as Django does."""


class MessageMiddleware(_AdminOnly, messages.MessageMiddleware):
    """Its storage lives in the session: a thread, as Django does."""


class AuthenticationMiddleware(_AdminOnly, _OnTheLoop, auth.AuthenticationMiddleware):
    """request.user is lazy: setting it reads nothing."""


class CsrfViewMiddleware(_AdminOnly, _OnTheLoop, csrf.CsrfViewMiddleware):
    """The CSRF token lives in a cookie (CSRF_USE_SESSIONS is off): reading and
    checking it touches nothing else. The API's views are CSRF-exempt anyway."""

    def __init__(self, get_response):
        super().__init__(get_response)
        if iscoroutinefunction(get_response):
            # Django reads process_view off the instance once: under ASGI an
            # async one is awaited on the loop instead of hopping to a thread.
            self.process_view = self._aprocess_view  # type: ignore[method-assign]

    async def _aprocess_view(self, request, callback, callback_args, callback_kwargs):
        if not _admin(request):
            return None
        return csrf.CsrfViewMiddleware.process_view(
            self, request, callback, callback_args, callback_kwargs
        )
