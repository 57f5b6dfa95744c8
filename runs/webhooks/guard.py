"""Which webhook targets may be connected to: a guard against server-side
request forgery. Pure: no database, no HTTP client; the allowlist is given.

A target's host is resolved at send time and every address it resolves to
must be public (not loopback, private, link-local, shared, reserved,
multicast or a cloud metadata address) unless the allowlist admits the host
or the address. The caller connects to the checked address itself
(runs.webhooks.transport), so a second resolution cannot point it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Metadata services reachable on addresses `is_global` does not already exclude.
METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
}


class Refused(Exception):
    """The target may not be connected to; recorded on the run, not retried."""


class ResolutionFailed(Exception):
    """The name could not be resolved for now (EAI_AGAIN, a failing resolver):
    retried like a network error, not a refusal."""


# A name that does not exist is a refusal; any other resolver error may pass.
NO_SUCH_NAME = {
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
    if hasattr(socket, name)
}

# The longest webhook URL accepted at create time: browsers' and proxies'
# common limit (and the Sitemaps/IE cap), far above any real receiver's.
MAX_URL_LENGTH = 2048


def url_problem(url: object) -> str | None:
    """Why `url` cannot be a webhook, or None when it can: http(s), a host, at
    most MAX_URL_LENGTH characters. Checked when a run or cron is created, so a
    bad URL answers 422 instead of failing after the run."""
    if not isinstance(url, str):
        return "Invalid webhook: must be a URL string"
    if len(url) > MAX_URL_LENGTH:
        return f"Invalid webhook: URL longer than {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return f"Invalid webhook URL: {url!r}"
    if parts.scheme not in ("http", "https"):
        return f"Invalid webhook scheme {parts.scheme!r}: must be http or https"
    if not parts.hostname:
        return "Invalid webhook hostname: the URL has no host"
    if any(c.isspace() for c in url):
        return "Invalid webhook URL: must not contain whitespace"
    return None


@dataclass(frozen=True)
class Allowlist:
    """Hosts (by name) and networks a webhook may reach even when private."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Any, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, items: Iterable[str]) -> Allowlist:
        """From CRONSVC_WEBHOOK_ALLOWLIST's items: a network (or address), else a host name."""
        hosts: set[str] = set()
        networks = []
        for item in items:
            item = item.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def admits_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def admits_address(self, address: Any) -> bool:
        return any(address in net for net in self.networks)


def blocked(address: Any) -> str | None:
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


def check_addresses(host: str, addresses: list[Any], allowlist: Allowlist) -> Any:
    """The address to connect to for `host`, given what it resolves to; raises
    Refused unless every one of them passes (a name answering with one public
    and one private address is refused rather than tried)."""
    if not addresses:
        raise Refused(f"{host} resolves to no address")
    host_admitted = allowlist.admits_host(host)
    for address in addresses:
        if host_admitted or allowlist.admits_address(address):
            continue
        why = blocked(address)
        if why:
            raise Refused(
                f"webhook target {host} resolves to {address}, {why} "
                "(admit it with CRONSVC_WEBHOOK_ALLOWLIST)"
            )
    return addresses[0]


def resolve(host: str, port: int, allowlist: Allowlist) -> Any:
    """The checked address to connect to for `host`; raises Refused, or
    ResolutionFailed for a resolver error that may pass."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in NO_SUCH_NAME:
                raise Refused(f"cannot resolve {host}: {exc}") from exc
            raise ResolutionFailed(f"cannot resolve {host} for now: {exc}") from exc
        addresses = list(
            dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos)
        )
    return check_addresses(host, addresses, allowlist)


@dataclass(frozen=True)
class Target:
    scheme: str
    hostname: str
    port: int  # the URL's, else the scheme's
    explicit_port: int | None  # as written in the URL


def target(url: str) -> Target:
    """Where `url` points; raises Refused unless it is http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"webhook URL {url!r} is not http(s)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Target(parts.scheme, parts.hostname, port, parts.port)
