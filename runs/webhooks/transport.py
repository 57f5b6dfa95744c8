"""The webhook's HTTP request: connected to the address runs.webhooks.guard
checked (Host header and TLS server name set to the original host), no proxy
from the environment.

- One deadline per attempt (CRONSVC_WEBHOOK_TIMEOUT): connecting, sending,
  the answer's headers and its body, every redirect hop included. httpx's
  timeouts are per socket operation, so a receiver trickling a byte a second
  never trips them: a watchdog shuts the connection's socket down at the
  deadline, and the body loop checks the deadline between chunks.
- The answer's body is read up to MAX_RESPONSE_BYTES and discarded (raw, not
  decompressed): a receiver answering gigabytes costs a worker nothing.
- Redirects: 307 and 308 re-POST the same body to the Location, each hop
  checked by the guard like the first; 301, 302 and 303 are answers, not
  followed (clients turn them into a GET without the body), which delivery
  records as a failure.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings

from runs.webhooks import guard

MAX_REDIRECTS = 5
# Bytes of an answer's body read (then discarded) before the connection is closed.
MAX_RESPONSE_BYTES = 64 * 1024
FOLLOWED_REDIRECTS = (307, 308)


class DeadlineExceeded(httpx.TimeoutException):
    """The attempt took longer than CRONSVC_WEBHOOK_TIMEOUT (connect, send and read)."""


def resolve(host: str, port: int) -> Any:
    """The checked address for `host`, with CRONSVC_WEBHOOK_ALLOWLIST; raises
    guard.Refused (or guard.ResolutionFailed, retryable)."""
    return guard.resolve(host, port, guard.Allowlist.parse(settings.CRONSVC_WEBHOOK_ALLOWLIST))


class Watchdog:
    """Shuts down the sockets of an attempt when its deadline passes, which
    wakes a read blocked on a trickling receiver (httpx then raises)."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0 or self.fired.is_set():
            raise DeadlineExceeded(
                f"no complete answer within {settings.CRONSVC_WEBHOOK_TIMEOUT:g} s "
                "(CRONSVC_WEBHOOK_TIMEOUT)"
            )
        return left

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: remember each connection's socket."""
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                if self.fired.is_set():
                    self._shutdown(sock)

    def _fire(self) -> None:
        self.fired.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def _read_capped(response: httpx.Response, watchdog: Watchdog) -> None:
    """Read at most MAX_RESPONSE_BYTES of the body, discarding it, within the deadline."""
    read = 0
    for chunk in response.iter_raw(chunk_size=16 * 1024):
        read += len(chunk)
        watchdog.remaining()
        if read >= MAX_RESPONSE_BYTES:
            break


def _send_pinned(client: httpx.Client, url: str, body: bytes, watchdog: Watchdog) -> httpx.Response:
    """One POST to `url`, connected to its checked address; the answer's body
    read up to the cap and the response closed."""
    target = guard.target(url)
    parts = urlsplit(url)
    address = resolve(target.hostname, target.port)
    ip_host = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit(
        (target.scheme, f"{ip_host}:{target.port}", parts.path or "/", parts.query, "")
    )
    hostname, port = target.hostname, target.explicit_port
    host_header = hostname if port is None else f"{hostname}:{port}"
    if ":" in hostname and not host_header.startswith("["):
        host_header = f"[{hostname}]" + (f":{port}" if port else "")
    left = watchdog.remaining()
    extensions: dict[str, Any] = {
        "trace": watchdog.trace,
        "timeout": {"connect": left, "read": left, "write": left, "pool": left},
    }
    if target.scheme == "https":
        extensions["sni_hostname"] = hostname
    request = client.build_request(
        "POST",
        pinned,
        content=body,
        headers={"Host": host_header, "Content-Type": "application/json"},
        extensions=extensions,
    )
    try:
        response = client.send(request, follow_redirects=False, stream=True)
        try:
            _read_capped(response, watchdog)
        finally:
            response.close()
    except httpx.HTTPError:
        if watchdog.fired.is_set():
            watchdog.remaining()  # raises DeadlineExceeded: the real reason
        raise
    return response


def send(url: str, payload: dict) -> httpx.Response:
    """POST `payload` to `url` within one deadline, following 307/308 by hand.

    Returns the last answer (closed; its body read up to the cap and
    discarded); a 301/302/303 is returned as it is. Raises guard.Refused for a
    target that may not be connected to, guard.ResolutionFailed and httpx
    errors (DeadlineExceeded among them) for the rest."""
    body = json.dumps(payload, default=str).encode()
    deadline = time.monotonic() + settings.CRONSVC_WEBHOOK_TIMEOUT
    with (
        Watchdog(deadline) as watchdog,
        httpx.Client(timeout=settings.CRONSVC_WEBHOOK_TIMEOUT, trust_env=False) as client,
    ):
        for _ in range(MAX_REDIRECTS + 1):
            response = _send_pinned(client, url, body, watchdog)
            if response.status_code not in FOLLOWED_REDIRECTS:
                return response
            url = urljoin(url, response.headers.get("location", ""))
        raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=None)
