"""The OpenAPI document tells the truth: drf-spectacular validates it without a
warning, every operation documents its body, its success response and its
errors, a client generator from PyPI builds a working client from it, and
/docs renders from our own static files."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.core.management import call_command

TAGS = {"assistants", "threads", "runs", "crons", "store", "system", "mcp"}
UUID_IDS = {"thread_id", "run_id", "cron_id"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document() -> dict:
    from django.test import Client

    response = Client().get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_spectacular_validates_without_warnings(tmp_path):
    # Raises SchemaGenerationError on any warning or error.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def test_every_operation_documents_its_body_responses_and_errors(document):
    schemas = document["components"]["schemas"]
    assert set(schemas["Error"]["properties"]) == {"detail"}
    assert schemas["Error"]["properties"]["detail"]["type"] == "string"
    ops = list(operations(document))
    assert len(ops) >= 41
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        successes = {code: r for code, r in responses.items() if code.startswith("2")}
        assert successes, where
        for code, response in successes.items():
            if code == "204" or (code == "202" and path.endswith(("/cancel", "/mcp"))):
                continue
            content = response.get("content")
            assert content, f"{where} {code} documents no body"
            for media_type, body in content.items():
                assert body.get("schema"), f"{where} {code} {media_type}"
                if media_type == "text/event-stream":
                    assert body["schema"] == {"type": "string"}, where
        # A trigger's body is optional and has no fields yet.
        if method in ("post", "patch") and not path.endswith(("/cancel", "/copy", "/trigger")):
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            assert body, where
            schema = body["schema"]
            ref = schema["items"]["$ref"] if schema.get("type") == "array" else schema["$ref"]
            assert ref.startswith("#/components/schemas/"), where
        errors = {code: r for code, r in responses.items() if code[0] in "45"}
        # /ok, /info and /health are open; /health's 503 is its own report.
        if path not in ("/ok", "/info", "/health"):
            assert {"403", "422"} <= set(errors), where
            for response in errors.values():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref in ("#/components/schemas/Error", "#/components/schemas/ValidationError")
        assert len(op["tags"]) == 1 and op["tags"][0] in TAGS, where
        if "/crons" in path:
            assert op["tags"] == ["crons"], where
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] in UUID_IDS:
                assert parameter["schema"] == {"type": "string", "format": "uuid"}, where
            if parameter["in"] == "path" and parameter["name"] == "assistant_id":
                assert parameter["schema"] == {"type": "string"}, where
                assert parameter["description"], where


def test_event_streams_and_errors_where_they_apply(document):
    paths = document["paths"]
    stream = paths["/threads/{thread_id}/runs/stream"]["post"]["responses"]
    assert list(stream["200"]["content"]) == ["text/event-stream"]
    assert {"403", "404", "409", "422"} <= set(stream)
    assert "409" in paths["/threads"]["post"]["responses"]
    assert paths["/runs/crons"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CronCreateRequest"
    }
    assert paths["/runs/crons/{cron_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/Cron"}
    graph = paths["/assistants/{assistant_id}/graph"]["get"]["parameters"]
    assert "graph" in next(p for p in graph if p["name"] == "assistant_id")["description"]
    # Every stream mode of the LangGraph Server's document, "events" included.
    join = paths["/threads/{thread_id}/runs/{run_id}/stream"]["get"]["parameters"]
    modes = next(p for p in join if p["name"] == "stream_mode")["schema"]["items"]["enum"]
    assert set(modes) == {
        "values",
        "messages",
        "messages-tuple",
        "tasks",
        "checkpoints",
        "updates",
        "events",
        "debug",
        "custom",
    }


def test_the_api_key_scheme_is_declared(document):
    assert document["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "One of CRONSVC_API_KEYS; not required when none are configured.",
    }
    for path, method, op in operations(document):
        if path in ("/ok", "/info", "/health"):
            assert {} in op["security"], path  # open
        else:
            assert op["security"] == [{"ApiKeyAuth": []}], f"{method} {path}"


@pytest.mark.django_db
def test_docs_render_from_local_static_files(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.content.decode()
    # Nothing is fetched from another host: no absolute URL at all in the page.
    assert not re.search(r"(https?:)?//[a-z0-9]", html, re.I), "a non-local URL in /docs"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        parsed = urlparse(asset)
        assert not parsed.scheme and not parsed.netloc and asset.startswith("/static/"), asset
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content])
    assert 'url: "/openapi.json"' in html


def _generate_client(document: dict, tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))
    bin_dir = Path(sys.executable).parent
    # The generator's post-hooks run `ruff` (a test dependency) from PATH.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(path),
            "--meta",
            "none",
            "--output-path",
            # Not the generator's own name for it (cronsvc_client): that is the
            # typed helper package this repo ships.
            str(tmp_path / "cronsvc_api"),
            "--fail-on-warning",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    return tmp_path


@pytest.mark.django_db(
    transaction=True, available_apps=["cronsvc", "threads", "runs", "crons", "django_celery_beat"]
)
def test_a_generated_client_builds_and_reads_the_api(document, tmp_path, live_server):
    from cronsvc.services import assistants_ensure_defaults

    assistants_ensure_defaults()
    sys.path.insert(0, str(_generate_client(document, tmp_path)))
    try:
        api = importlib.import_module("cronsvc_api")
        models = importlib.import_module("cronsvc_api.models")
        create_thread = importlib.import_module("cronsvc_api.api.threads.threads_create")
        create_cron = importlib.import_module("cronsvc_api.api.crons.crons_create")
        search_crons = importlib.import_module("cronsvc_api.api.crons.crons_search")
        client = api.Client(base_url=live_server.url, raise_on_unexpected_status=True)

        thread = create_thread.sync(
            client=client, body=models.ThreadCreateRequest.from_dict({"metadata": {"k": "v"}})
        )
        assert isinstance(thread, models.Thread) and thread.metadata.to_dict() == {"k": "v"}
        cron = create_cron.sync(
            client=client,
            body=models.CronCreateRequest.from_dict(
                {"assistant_id": "agent", "schedule": "*/5 * * * *", "input": {"m": 1}}
            ),
        )
        assert isinstance(cron, models.Cron) and cron.next_run_date is not None
        found = search_crons.sync(client=client, body=models.CronSearchRequest.from_dict({}))
        assert [c.cron_id for c in found] == [cron.cron_id]
        missing = create_cron.sync_detailed(
            client=client,
            body=models.CronCreateRequest.from_dict(
                {"assistant_id": "00000000-0000-0000-0000-000000000000", "schedule": "* * * * *"}
            ),
        )
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Error)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "cronsvc_api"]:
            del sys.modules[name]
