"""LangGraph custom auth: the `auth` object named in langgraph.json.

`{"auth": {"path": "./auth.py:auth"}}` (a file path relative to langgraph.json,
or a module path importable from its directory) names a `langgraph_sdk.Auth`.
Without it, nothing here applies and API keys work as before
(cronsvc.http.auth).

- Authentication: `authenticate_request` calls the `@auth.authenticate`
  handler with the parameters it names (cronsvc.http.auth.LangGraphAuthentication
  calls it on every API request but the public ones) and turns what it returns
  into an `AuthUser`. The user is the request's *current user*
  (`current_user`), a context variable the middleware resets per request;
  the beat sets it with `acting_as(owner)` when a cron fires.
- Authorization: `authorize(resource, action, value)`, the one hook every
  service and selector calls before reading or writing. It finds the handler
  the way the LangGraph Server does ((resource, action) → (resource, *) →
  (*, action) → (*, *) → the global handler), runs it, and returns None
  (allowed) or a filter on the resource's metadata (cronsvc.filters), which
  the selectors apply in SQL; False is a 403. Handlers may change `value`:
  the caller stores what they leave there. Without a current user (the admin,
  workers, the beat outside a cron's owner) every action is allowed.
- Handlers are coroutines run on one event loop of the process (`run_async`,
  a thread started once), never on a new loop per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import dis
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from langgraph_sdk import Auth
from langgraph_sdk.auth.exceptions import HTTPException as AuthHTTPException
from langgraph_sdk.auth.types import AuthContext

from cronsvc.errors import AuthFailed, Forbidden
from cronsvc.filters import InvalidFilter, json_filter, null_or_related_json_filter
from cronsvc.pyfiles import import_file

log = logging.getLogger(__name__)

# Every (resource, action) a handler may cover, as the LangGraph Server names them.
RESOURCE_ACTIONS: dict[str, tuple[str, ...]] = {
    "assistants": ("create", "read", "update", "delete", "search"),
    "threads": ("create", "read", "update", "delete", "search", "create_run"),
    "crons": ("create", "read", "update", "delete", "search"),
    "store": ("put", "get", "search", "delete", "list_namespaces"),
}

# What an authenticate handler may ask for by name.
AUTHENTICATE_PARAMETERS = frozenset(
    {
        "request",
        "headers",
        "authorization",
        "path",
        "method",
        "path_params",
        "query_params",
        "body",
        "scopes",
        "user",
    }
)

T = TypeVar("T")


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _read_config(config_path: Path) -> dict[str, Any]:
    with config_path.open() as fh:
        config = json.load(fh)
    if not isinstance(config, dict):
        raise ImproperlyConfigured(f"{config_path} is not a JSON object")
    return config


def _import_target(base: Path, spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ImproperlyConfigured(
            f"auth.path {spec!r} must look like './auth.py:auth' or 'package.module:auth'"
        )
    if target.endswith(".py"):
        path = (base / target).resolve()
        if not path.is_file():
            raise ImproperlyConfigured(f"auth.path {spec!r}: {path} does not exist")
        try:
            module = import_file(path, "cronsvc_auth")
        except ImportError as exc:
            raise ImproperlyConfigured(f"auth.path {spec!r}: {exc}") from exc
    else:
        # A module path, importable from the config file's directory (as the
        # LangGraph Server installs the "." dependency).
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        module = importlib.import_module(target)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImproperlyConfigured(f"auth.path {spec!r}: {target} has no {attr!r}") from None


def uncovered(auth: Auth) -> list[tuple[str, str]]:
    """The (resource, action) pairs no handler covers: allowed to everyone."""
    return [
        (resource, action)
        for resource, actions in RESOURCE_ACTIONS.items()
        for action in actions
        if handler_for(auth, resource, action) is None
    ]


def load_auth(config_path: Path) -> Auth | None:
    """The `Auth` that `config_path`'s `auth.path` names (None without one);
    ImproperlyConfigured when it cannot be used."""
    config = _read_config(config_path)
    section = config.get("auth")
    if not section:
        return None
    if not isinstance(section, dict) or not isinstance(section.get("path"), str):
        raise ImproperlyConfigured(
            f'{config_path.name}: "auth" must be an object with a "path", '
            'e.g. {"path": "./auth.py:auth"}'
        )
    spec = section["path"]
    auth = _import_target(config_path.resolve().parent, spec)
    if not isinstance(auth, Auth):
        raise ImproperlyConfigured(
            f"auth.path {spec!r} is a {type(auth).__name__}, not a langgraph_sdk.Auth"
        )
    handler = auth._authenticate_handler
    if handler is None:
        raise ImproperlyConfigured(
            f"auth.path {spec!r}: the Auth object has no @auth.authenticate handler; "
            "custom auth needs one to know who calls"
        )
    unknown = sorted(set(inspect.signature(handler).parameters) - AUTHENTICATE_PARAMETERS)
    if unknown:
        raise ImproperlyConfigured(
            f"auth.path {spec!r}: the authenticate handler asks for {unknown}; "
            f"it may take {sorted(AUTHENTICATE_PARAMETERS)}"
        )
    gaps = uncovered(auth)
    if gaps:
        log.warning(
            "custom auth: no handler covers %s; these are allowed to every authenticated user",
            ", ".join(f"{r}.{a}" for r, a in gaps),
        )
    return auth


@cache
def _auth_of(config_path: str) -> Auth | None:
    return load_auth(Path(config_path))


def get_auth() -> Auth | None:
    """The configured Auth (loaded once per langgraph.json), or None."""
    override = getattr(settings, "CRONSVC_AUTH", None)
    if override is not None:
        return override  # type: ignore[no-any-return]
    return _auth_of(str(settings.LANGGRAPH_CONFIG))


def enabled() -> bool:
    return get_auth() is not None


# --------------------------------------------------------------------------
# One event loop for every handler
# --------------------------------------------------------------------------


class _Loop:
    """An event loop on a daemon thread of its own, started on first use (and
    again in a forked child)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="cronsvc-auth-loop", daemon=True
                )
                thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


_LOOP = _Loop()


# The opcodes with which a coroutine can give way to its event loop (Python
# 3.11): `await`, `yield`, `async with` and `async for`.
_SUSPENDING = frozenset(
    {
        "YIELD_VALUE",
        "SEND",
        "GET_AWAITABLE",
        "BEFORE_ASYNC_WITH",
        "GET_AITER",
        "GET_ANEXT",
        "END_ASYNC_FOR",
        "ASYNC_GEN_WRAP",
    }
)


# Names by which a coroutine may reach for the running loop without awaiting
# (asyncio.get_running_loop(), create_task(...) left to run on its own...).
_LOOP_NAMES = frozenset(
    {
        "asyncio",
        "get_running_loop",
        "get_event_loop",
        "create_task",
        "ensure_future",
        "current_task",
        "run_in_executor",
        "call_soon",
        "call_later",
        "TaskGroup",
    }
)


@cache
def never_suspends(code: Any) -> bool:
    """Whether a coroutine of `code` runs from start to end without giving
    way to an event loop or reaching for one: no await, async with or async
    for in its body, and no asyncio name in it."""
    if _LOOP_NAMES & set(code.co_names):
        return False
    return not any(op.opname in _SUSPENDING for op in dis.get_instructions(code))


def run_async(awaitable: Awaitable[T]) -> T:
    """The result of `awaitable`, run on the process's auth event loop.

    A coroutine that never suspends (the common handler: a lookup and a dict)
    runs right here instead, on the caller's thread: it would run to its end
    in one step on the loop too, so the hand-over to the loop's thread and
    back (about 0.1 ms, more on a busy machine) buys nothing."""
    if inspect.iscoroutine(awaitable) and never_suspends(awaitable.cr_code):
        try:
            awaitable.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        awaitable.close()  # pragma: no cover - it has no way to suspend
        raise RuntimeError("an auth handler suspended without awaiting")  # pragma: no cover
    loop = _LOOP.get()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # pragma: no cover - handlers never call back into cronsvc
        raise RuntimeError("an auth handler cannot wait for another on its own loop")

    async def wrapper() -> T:
        return await awaitable

    return asyncio.run_coroutine_threadsafe(wrapper(), loop).result()


def call_handler(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `fn` (sync or async) and return its result."""
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        return run_async(result)
    return result


# --------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------


class AuthUser:
    """The authenticated user as handlers see it (langgraph_sdk's BaseUser):
    identity, display_name, is_authenticated, permissions, and what else the
    authenticate handler returned (as keys, and as attributes)."""

    __slots__ = ("display_name", "extra", "identity", "is_authenticated", "permissions", "raw")

    def __init__(
        self,
        identity: str,
        *,
        display_name: str | None = None,
        is_authenticated: bool = True,
        permissions: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        raw: Any = None,
    ) -> None:
        self.identity = identity
        self.display_name = display_name if display_name is not None else identity
        self.is_authenticated = is_authenticated
        self.permissions = list(permissions or [])
        self.extra = dict(extra or {})
        self.raw = raw

    def to_dict(self) -> dict[str, Any]:
        """The user as LangGraph serialises it (`langgraph_auth_user`)."""
        return {
            **self.extra,
            "identity": self.identity,
            "display_name": self.display_name,
            "is_authenticated": self.is_authenticated,
            "permissions": list(self.permissions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthUser:
        known = {"identity", "display_name", "is_authenticated", "permissions"}
        return cls(
            str(data["identity"]),
            display_name=data.get("display_name"),
            is_authenticated=bool(data.get("is_authenticated", True)),
            permissions=[str(p) for p in data.get("permissions") or []],
            extra={k: v for k, v in data.items() if k not in known},
        )

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __getattr__(self, name: str) -> Any:
        extra = object.__getattribute__(self, "extra")
        if name in extra:
            return extra[name]
        raw = object.__getattribute__(self, "raw")
        if raw is not None and not isinstance(raw, Mapping | str):
            return getattr(raw, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"AuthUser({self.identity!r})"


def to_user(result: Any) -> AuthUser:
    """What an authenticate handler returned, as an AuthUser: a string
    identity, a mapping with `identity`, or an object with `.identity`."""
    if isinstance(result, AuthUser):
        return result
    if isinstance(result, str) and result:
        return AuthUser(result)
    if isinstance(result, Mapping):
        if not result.get("identity"):
            raise AuthFailed("The authenticate handler returned a user without identity", 500)
        return AuthUser.from_dict(result)
    identity = getattr(result, "identity", None)
    if identity:
        return AuthUser(
            str(identity),
            display_name=getattr(result, "display_name", None),
            is_authenticated=bool(getattr(result, "is_authenticated", True)),
            permissions=list(getattr(result, "permissions", None) or []),
            raw=result,
        )
    raise AuthFailed("The authenticate handler returned no user identity", 500)


# --------------------------------------------------------------------------
# The current user
# --------------------------------------------------------------------------

_CURRENT: contextvars.ContextVar[AuthUser | None] = contextvars.ContextVar(
    "cronsvc_auth_user", default=None
)


def current_user() -> AuthUser | None:
    return _CURRENT.get()


def set_current_user(user: AuthUser | None) -> contextvars.Token[AuthUser | None]:
    return _CURRENT.set(user)


def reset_current_user(token: contextvars.Token[AuthUser | None]) -> None:
    _CURRENT.reset(token)


@contextmanager
def acting_as(user: AuthUser | None) -> Iterator[None]:
    """Authorize what runs inside as `user` (None: as the operator)."""
    token = _CURRENT.set(user)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def configurable_of(user: AuthUser | None) -> dict[str, Any]:
    """What a run's config.configurable carries about its user, as on the
    LangGraph Server ({} without one)."""
    if user is None:
        return {}
    return {
        "langgraph_auth_user_id": user.identity,
        "langgraph_auth_user": user.to_dict(),
        "langgraph_auth_permissions": list(user.permissions),
    }


def with_user_configurable(kwargs: dict[str, Any], user: AuthUser | None) -> dict[str, Any]:
    """Run kwargs whose config.configurable carries `user` (kwargs unchanged without one)."""
    extra = configurable_of(user)
    if not extra:
        return kwargs
    config = dict(kwargs.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}), **extra}
    return {**kwargs, "config": config}


# --------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------


@cache
def parameters_of(handler: Callable[..., Any]) -> tuple[str, ...]:
    """The names of the parameters `handler` takes."""
    return tuple(inspect.signature(handler).parameters)


def authenticate_request(request: Any) -> AuthUser:
    """The user the authenticate handler finds for a DRF `request`.
    Auth.exceptions.HTTPException → its status and detail; any other error a 401."""
    auth = get_auth()
    if auth is None or auth._authenticate_handler is None:  # pragma: no cover - caller checks
        raise AuthFailed("Custom auth is not configured", 500)
    handler = auth._authenticate_handler
    wanted = parameters_of(handler)
    sources: dict[str, Callable[[], Any]] = {
        "request": lambda: request,
        "headers": lambda: {
            k.lower().encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()
        },
        "authorization": lambda: request.headers.get("authorization"),
        "path": lambda: request.path,
        "method": lambda: request.method,
        "path_params": lambda: {
            k: str(v) for k, v in ((request.parser_context or {}).get("kwargs") or {}).items()
        },
        "query_params": lambda: dict(request.query_params.items()),
        "body": lambda: request.data if request.method not in ("GET", "HEAD", "DELETE") else None,
        "scopes": list,
        "user": lambda: None,
    }
    kwargs = {name: sources[name]() for name in wanted if name in sources}
    try:
        result = call_handler(handler, **kwargs)
    except AuthHTTPException as exc:
        raise AuthFailed(str(exc.detail), exc.status_code, headers=exc.headers) from exc
    except AuthFailed:
        raise
    except Exception as exc:
        log.warning("custom auth: the authenticate handler failed: %r", exc)
        raise AuthFailed("Unauthorized", 401) from exc
    return to_user(result)


# --------------------------------------------------------------------------
# Authorization
# --------------------------------------------------------------------------


def handler_for(auth: Auth, resource: str, action: str) -> Callable[..., Any] | None:
    """The handler for (resource, action), in the LangGraph Server's order."""
    for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
        handlers = auth._handlers.get(key)
        if handlers:
            return handlers[-1]
    if auth._global_handlers:
        return auth._global_handlers[-1]
    return None


def authorize(resource: str, action: str, value: dict[str, Any]) -> dict[str, Any] | None:
    """Run the handler for (resource, action) as the current user on `value`
    (which it may change). None: allowed; a dict: the filter the resource's
    metadata must match. A denial raises Forbidden (403)."""
    user = _CURRENT.get()
    if user is None:
        return None
    auth = get_auth()
    if auth is None:
        return None
    handler = handler_for(auth, resource, action)
    if handler is None:
        return None
    ctx = AuthContext(
        permissions=list(user.permissions),
        user=user,  # type: ignore[arg-type]
        resource=resource,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
    )
    try:
        result = run_async(handler(ctx=ctx, value=value))
    except AuthHTTPException as exc:
        raise AuthFailed(str(exc.detail), exc.status_code, headers=exc.headers) from exc
    if result is None or result is True:
        return None
    if result is False:
        raise Forbidden("Forbidden")
    if not isinstance(result, dict):
        log.error("custom auth: %s.%s handler returned %r", resource, action, result)
        raise AuthFailed("Auth handler returned an invalid result", 500)
    return result or None


def filter_q(filter_: dict[str, Any] | None, field: str = "metadata") -> Q:
    """A Q for rows whose JSON `field` matches a handler's filter (all rows for None)."""
    if not filter_:
        return Q()
    try:
        return json_filter(field, filter_, what="auth filter")
    except InvalidFilter as exc:
        log.error("custom auth: a handler returned a filter that breaks the grammar: %s", exc)
        raise AuthFailed(f"Auth handler returned an invalid filter: {exc}", 500) from exc


def null_or_related_filter_q(field: str, model: Any, filter_: dict[str, Any] | None) -> Q:
    """A Q for rows whose nullable foreign key `field` is null or points to a
    `model` row whose metadata matches a handler's filter (all rows for None)."""
    try:
        return null_or_related_json_filter(field, model, filter_)
    except InvalidFilter as exc:
        log.error("custom auth: a handler returned a filter that breaks the grammar: %s", exc)
        raise AuthFailed(f"Auth handler returned an invalid filter: {exc}", 500) from exc


# The default assistants made from langgraph.json: readable by every user.
SYSTEM_ASSISTANT = {"created_by": "system"}


def assistant_read_q(filter_: dict[str, Any] | None) -> Q:
    """The assistants a read filter lets through: those matching it, and the
    system's default assistants."""
    if not filter_:
        return Q()
    return filter_q(filter_) | filter_q(SYSTEM_ASSISTANT)
