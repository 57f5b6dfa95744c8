"""The webhook address guard (runs.webhooks.guard), without a database or a
network: which targets a webhook may reach."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest

from runs.webhooks import guard
from runs.webhooks.guard import Allowlist, Refused

NONE = Allowlist()


def ip(text: str):
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped: judged as IPv4
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("10.20.30.40", "a private address"),
        ("192.168.1.1", "a private address"),
        ("172.16.0.1", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "a private address"),  # `is_private` before `is_unspecified`
        ("100.64.1.2", "not a public address"),  # shared (carrier-grade NAT)
    ],
)
def test_non_public_addresses_are_blocked_with_the_reason(address, reason):
    assert guard.blocked(ip(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert guard.blocked(ip(address)) is None


def test_every_address_a_name_resolves_to_must_pass():
    with pytest.raises(
        Refused, match=re.escape("rebinding.example resolves to 10.0.0.7, a private address")
    ):
        guard.check_addresses("rebinding.example", [ip("93.184.215.14"), ip("10.0.0.7")], NONE)
    assert guard.check_addresses("ok.example", [ip("93.184.215.14"), ip("8.8.8.8")], NONE) == ip(
        "93.184.215.14"
    )


def test_a_refusal_says_how_to_admit_the_target():
    with pytest.raises(Refused) as refused:
        guard.check_addresses("127.0.0.1", [ip("127.0.0.1")], NONE)
    assert str(refused.value) == (
        "webhook target 127.0.0.1 resolves to 127.0.0.1, a loopback address "
        "(admit it with CRONSVC_WEBHOOK_ALLOWLIST)"
    )


def test_a_name_resolving_to_nothing_is_refused():
    with pytest.raises(Refused, match=re.escape("nowhere.example resolves to no address")):
        guard.check_addresses("nowhere.example", [], NONE)


def test_the_allowlist_admits_networks_addresses_and_host_names():
    allowlist = Allowlist.parse(["127.0.0.0/8", " 10.0.0.7 ", "", "Hooks.Example.COM."])
    assert allowlist.hosts == frozenset({"hooks.example.com"})
    assert guard.check_addresses("127.0.0.1", [ip("127.0.0.1")], allowlist) == ip("127.0.0.1")
    assert guard.check_addresses("x.example", [ip("10.0.0.7")], allowlist) == ip("10.0.0.7")
    # An admitted host name admits whatever it resolves to.
    assert guard.check_addresses("hooks.example.com.", [ip("169.254.169.254")], allowlist)
    with pytest.raises(Refused, match=re.escape("10.0.0.8, a private address")):
        guard.check_addresses("x.example", [ip("10.0.0.8")], allowlist)


def test_resolve_checks_a_literal_address_without_a_lookup(monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("an address literal is not looked up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    with pytest.raises(Refused, match="a cloud metadata address"):
        guard.resolve("169.254.169.254", 80, NONE)
    assert guard.resolve("93.184.215.14", 443, NONE) == ip("93.184.215.14")


def test_resolve_checks_every_resolved_address(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", 443, 0, 2)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
        ],
    )
    with pytest.raises(Refused, match=re.escape("fe80::1, a link-local address")):
        guard.resolve("scoped.example", 443, NONE)


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(Refused, match=re.escape("cannot resolve missing.example")):
        guard.resolve("missing.example", 443, NONE)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://hooks.example.com/x", ("http", "hooks.example.com", 80, None)),
        ("https://hooks.example.com/x", ("https", "hooks.example.com", 443, None)),
        ("https://hooks.example.com:8443/x", ("https", "hooks.example.com", 8443, 8443)),
        ("http://[::1]:8080/x", ("http", "::1", 8080, 8080)),
    ],
)
def test_target_of_an_http_url(url, expected):
    target = guard.target(url)
    assert (target.scheme, target.hostname, target.port, target.explicit_port) == expected


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.com/x", "file:///etc/passwd", "http:///x", "hooks"]
)
def test_only_http_urls_with_a_host_are_targets(url):
    with pytest.raises(Refused, match=re.escape("is not http(s)")):
        guard.target(url)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///etc/passwd", "Invalid webhook scheme 'file': must be http or https"),
        ("not a url", "Invalid webhook scheme '': must be http or https"),
        ("http:///x", "Invalid webhook hostname: the URL has no host"),
        ("http://h.example:0x/x", "Invalid webhook URL: 'http://h.example:0x/x'"),
        ("http://h.example/" + "x" * 2040, "Invalid webhook: URL longer than 2048 characters"),
        ("http://h.example/a\nb", "Invalid webhook URL: must not contain whitespace"),
        (5, "Invalid webhook: must be a URL string"),
    ],
)
def test_url_problem_says_why_a_url_cannot_be_a_webhook(url, problem):
    assert guard.url_problem(url) == problem


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/x", "http://10.0.0.7:8080/", "http://h.example/" + "x" * 2031],
)
def test_url_problem_passes_http_urls_with_a_host(url):
    assert guard.url_problem(url) is None


def test_a_resolver_error_that_may_pass_is_retryable_not_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(
        guard.ResolutionFailed, match=re.escape("cannot resolve hooks.example for now")
    ):
        guard.resolve("hooks.example", 443, NONE)
