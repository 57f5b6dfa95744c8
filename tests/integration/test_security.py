"""Security defaults: Host validation against DNS rebinding, admin login
throttling, and production settings that pass `check --deploy`."""

import os
import secrets
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8123", "0.0.0.0"])
def test_a_foreign_host_header_is_refused(client, host):
    assert client.get("/ok", HTTP_HOST=host).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:8123", "localhost", "[::1]:8123"])
def test_loopback_names_are_served(client, host):
    assert client.get("/ok", HTTP_HOST=host).status_code == 200


def test_admin_login_is_locked_after_repeated_failures(client, django_user_model, settings):
    settings.AXES_FAILURE_LIMIT = 5
    django_user_model.objects.create_superuser("operator", "op@example.com", "right-password")
    for _ in range(30):
        response = client.post(
            "/admin/login/", {"username": "operator", "password": "wrong", "next": "/admin/"}
        )
        assert response.status_code in (200, 403, 429)
    response = client.post(
        "/admin/login/", {"username": "operator", "password": "right-password", "next": "/admin/"}
    )
    assert response.status_code in (403, 429)
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still the login page


def test_a_right_password_before_the_limit_logs_in(client, django_user_model):
    django_user_model.objects.create_superuser("operator", "op@example.com", "right-password")
    for _ in range(2):
        client.post("/admin/login/", {"username": "operator", "password": "wrong"})
    response = client.post(
        "/admin/login/", {"username": "operator", "password": "right-password", "next": "/admin/"}
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_serve_on_every_interface_needs_the_operators_host_names(settings):
    settings.CRONSVC_API_KEYS = ["k"]
    settings.OPERATOR_ALLOWED_HOSTS = []
    with pytest.raises(CommandError, match="DJANGO_ALLOWED_HOSTS"):
        call_command("serve", bind="0.0.0.0:8123")


def test_production_settings_pass_check_deploy(tmp_path):
    env = {
        **os.environ,
        "CRONSVC_DATA_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "cron.example.com",
        "CRONSVC_HTTPS": "true",
        "DJANGO_DEBUG": "false",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
