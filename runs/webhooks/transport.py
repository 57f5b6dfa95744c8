"""The webhook's HTTP request: connected to the address runs.webhooks.guard
checked (Host header and TLS server name set to the original host), redirects
followed by hand with each hop checked the same way, CRONSVC_WEBHOOK_TIMEOUT
per request, no proxy from the environment."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings

from runs.webhooks import guard

MAX_REDIRECTS = 5


def resolve(host: str, port: int) -> Any:
    """The checked address for `host`, with CRONSVC_WEBHOOK_ALLOWLIST; raises guard.Refused."""
    return guard.resolve(host, port, guard.Allowlist.parse(settings.CRONSVC_WEBHOOK_ALLOWLIST))


def _send_pinned(client: httpx.Client, method: str, url: str, body: bytes | None) -> httpx.Response:
    """One request to `url`, connected to its checked address."""
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
    headers = {"Host": host_header}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = client.build_request(
        method,
        pinned,
        content=body,
        headers=headers,
        extensions={"sni_hostname": hostname} if target.scheme == "https" else {},
    )
    return client.send(request, follow_redirects=False)


def send(url: str, payload: dict) -> httpx.Response:
    """POST `payload` to `url`, following redirects by hand; raises guard.Refused
    for a target that may not be connected to, httpx errors for the rest."""
    body = json.dumps(payload, default=str).encode()
    method = "POST"
    with httpx.Client(timeout=settings.CRONSVC_WEBHOOK_TIMEOUT, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            response = _send_pinned(client, method, url, body)
            if not response.is_redirect:
                return response
            location = response.headers.get("location", "")
            url = urljoin(url, location)
            if response.status_code in (301, 302, 303):
                method, body = "GET", None  # as clients do: the body is not re-sent
        raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=None)
