"""Routing details outside the resources."""

import pytest

pytestmark = pytest.mark.django_db


def test_unknown_route_answers_json_404(client):
    response = client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_openapi_document_and_docs_are_served(client):
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert "/runs/crons" in schema.json()["paths"]
    assert client.get("/docs").status_code == 200
