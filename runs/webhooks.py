"""Webhook delivery: POST a finished run to its `webhook`, as the LangGraph
Server does (the run, its status, start and end times, the thread's `values`,
and `error` for a failed run).

Server-side request forgery guard: the target's host is resolved at send
time, every address it resolves to must be public (not loopback, private,
link-local, shared, reserved, multicast or a cloud metadata address) unless
CRONSVC_WEBHOOK_ALLOWLIST admits the host or the address, and the request
goes to the checked address itself (Host header and TLS server name set to
the original host), so a second resolution cannot point it elsewhere.
Redirects are followed by hand, each hop checked the same way. A refused
target is recorded on the run and never connected to.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from runs.models import Run

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
# Metadata services reachable on addresses `is_global` does not already exclude.
METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
}


class Refused(Exception):
    """The target may not be connected to; recorded on the run, not retried."""


@dataclass
class Outcome:
    status: str  # one of Run.WebhookStatus
    status_code: int | None = None
    error: str | None = None
    retry: bool = False


def _allowlist() -> tuple[set[str], list[Any]]:
    hosts: set[str] = set()
    networks = []
    for item in settings.CRONSVC_WEBHOOK_ALLOWLIST:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower().rstrip("."))
    return hosts, networks


def _blocked(address: Any) -> str | None:
    """Why `address` is not a public target, or None when it is."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA:
        return "a cloud metadata address"
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def resolve(host: str, port: int) -> Any:
    """The address to connect to for `host`, checked; raises Refused.

    Every address the name resolves to must pass, so a name that answers
    with one public and one private address is refused rather than tried."""
    hosts, networks = _allowlist()
    host_admitted = host.lower().rstrip(".") in hosts
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))
    if not addresses:
        raise Refused(f"{host} resolves to no address")
    for address in addresses:
        if host_admitted or any(address in net for net in networks):
            continue
        why = _blocked(address)
        if why:
            raise Refused(
                f"webhook target {host} resolves to {address}, {why} "
                "(admit it with CRONSVC_WEBHOOK_ALLOWLIST)"
            )
    return addresses[0]


def _post_pinned(client: httpx.Client, method: str, url: str, body: bytes | None) -> httpx.Response:
    """One request to `url`, connected to its checked address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"webhook URL {url!r} is not http(s)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve(parts.hostname, port)
    ip_host = f"[{address}]" if address.version == 6 else str(address)
    pinned = urlunsplit((parts.scheme, f"{ip_host}:{port}", parts.path or "/", parts.query, ""))
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname and not host_header.startswith("["):
        host_header = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    headers = {"Host": host_header}
    if body is not None:
        headers["Content-Type"] = "application/json"
    request = client.build_request(
        method,
        pinned,
        content=body,
        headers=headers,
        extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
    )
    return client.send(request, follow_redirects=False)


def send(url: str, payload: dict) -> httpx.Response:
    """POST `payload` to `url`, following redirects by hand; raises Refused
    for a target that may not be connected to, httpx errors for the rest."""
    body = json.dumps(payload, default=str).encode()
    method = "POST"
    with httpx.Client(timeout=settings.CRONSVC_WEBHOOK_TIMEOUT, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            response = _post_pinned(client, method, url, body)
            if not response.is_redirect:
                return response
            location = response.headers.get("location", "")
            url = urljoin(url, location)
            if response.status_code in (301, 302, 303):
                method, body = "GET", None  # as clients do: the body is not re-sent
        raise httpx.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", request=None)


def payload_for(run: Run) -> dict:
    from runs.wire import run_out
    from threads.models import Thread

    values = run.output if run.status != Run.Status.ERROR else None
    if run.status == Run.Status.ERROR:
        values = Thread.objects.filter(pk=run.thread_id).values_list("values", flat=True).first()
    body = {
        **run_out(run),
        "status": run.status,
        "run_started_at": run.started_at.isoformat() if run.started_at else None,
        "run_ended_at": run.finished_at.isoformat() if run.finished_at else None,
        "webhook_sent_at": datetime.now(UTC).isoformat(),
        "values": values,
    }
    if run.status == Run.Status.ERROR:
        output = run.output or {}
        body["error"] = {"error": output.get("error", "Error"), "message": run.error or ""}
    return body


def deliver(run_id, *, final: bool) -> Outcome | None:
    """Make one delivery attempt of `run_id`'s webhook and record it.

    Returns None when there is nothing to do (no webhook, already delivered
    or refused, or another task holds this attempt). `final`: the last
    attempt allowed, so a retryable failure is recorded as `failed`."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.webhook_status != Run.WebhookStatus.PENDING:
        return None
    url = (run.kwargs or {}).get("webhook")
    if not url:
        return None
    # Claim the attempt (compare-and-set on the count): a duplicate task
    # message does not send the same attempt twice.
    now = timezone.now()
    if not Run.objects.filter(
        pk=run.pk, webhook_status=Run.WebhookStatus.PENDING, webhook_attempts=run.webhook_attempts
    ).update(webhook_attempts=F("webhook_attempts") + 1, webhook_sent_at=now, updated_at=now):
        return None
    try:
        response = send(url, payload_for(run))
    except Refused as exc:
        log.warning("run %s: webhook refused: %s", run.run_id, exc)
        outcome = Outcome(Run.WebhookStatus.REFUSED, error=str(exc))
    except httpx.HTTPError as exc:
        outcome = Outcome(
            Run.WebhookStatus.FAILED if final else Run.WebhookStatus.PENDING,
            error=f"{type(exc).__name__}: {exc}",
            retry=not final,
        )
    else:
        if response.is_success:
            outcome = Outcome(Run.WebhookStatus.DELIVERED, status_code=response.status_code)
        else:
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            outcome = Outcome(
                Run.WebhookStatus.PENDING if retryable and not final else Run.WebhookStatus.FAILED,
                status_code=response.status_code,
                error=f"HTTP {response.status_code}",
                retry=retryable and not final,
            )
    Run.objects.filter(pk=run.pk).update(
        webhook_status=outcome.status,
        webhook_status_code=outcome.status_code,
        webhook_error=outcome.error,
        updated_at=timezone.now(),
    )
    return outcome
