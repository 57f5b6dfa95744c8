"""Which Host names a server accepts for its bind address (cronsvc.topology)."""

import pytest

from cronsvc.topology import allowed_hosts_for, bind_host


@pytest.mark.parametrize(
    ("bind", "host"),
    [
        ("127.0.0.1:8123", "127.0.0.1"),
        ("[::1]:8123", "[::1]"),
        ("0.0.0.0:80", "0.0.0.0"),
        ("h", "h"),
    ],
)
def test_bind_host(bind, host):
    assert bind_host(bind) == host


def test_one_address_is_allowed_beside_the_operators_names():
    assert allowed_hosts_for("10.0.0.5", ["cron.example.com"]) == ["cron.example.com", "10.0.0.5"]
    assert allowed_hosts_for("::1", []) == ["[::1]"]


def test_every_interface_needs_the_operators_names():
    assert allowed_hosts_for("0.0.0.0", ["cron.example.com"]) == ["cron.example.com"]
    with pytest.raises(ValueError, match="DJANGO_ALLOWED_HOSTS"):
        allowed_hosts_for("0.0.0.0", [])
