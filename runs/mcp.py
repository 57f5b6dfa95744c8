"""`/mcp`: the assistants as tools of a Model Context Protocol server, as the
LangGraph Server exposes them (Streamable HTTP transport, stateless).

- `POST /mcp` takes one JSON-RPC 2.0 message. Requests answer a JSON-RPC
  response (200): `initialize` (the client's protocol version if supported,
  else the latest), `ping`, `tools/list` (one tool per assistant the caller
  may see, named after it — whitespace to `_`, characters MCP refuses
  dropped — with its graph's input schema; `cursor`/`nextCursor` page by
  100), `tools/call` (a stateless run of that assistant with `arguments` as
  its input, waited for as `runs.wait` waits, holding no thread; its values
  as JSON text, or `isError` with the run's error). An unknown method or
  tool is a JSON-RPC error in a 200. Notifications and responses answer 202.
  A message that is not JSON-RPC, or an Accept header naming neither
  application/json nor text/event-stream, is a 400 with a `detail`.
- `GET /mcp` (a server-initiated stream) and `DELETE /mcp` (the end of a
  session) are 405: the server opens no stream and keeps no session, as the
  transport lets a stateless server answer.

The API key and custom auth apply as to the rest of the API: a tool call is a
run the caller could have started with `POST /runs/wait`."""

from __future__ import annotations

import json
import logging
import re

from adrf.views import APIView as AsyncAPIView
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from cronsvc import graphs, offloop
from cronsvc.errors import BadRequest
from cronsvc.http.inputs import validated
from cronsvc.http.schema import errors
from cronsvc.selectors import assistant_search
from cronsvc.services import assistants_ensure_defaults
from cronsvc.wire import server_info
from runs import services, waiters
from runs.apis import RunCreateIn
from runs.models import Run
from runs.wire import run_result

log = logging.getLogger(__name__)

PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
PAGE = 100
# JSON-RPC's error codes (https://www.jsonrpc.org/specification#error_object).
METHOD_NOT_FOUND, INVALID_PARAMS = -32601, -32602
_NOT_A_TOOL_CHARACTER = re.compile(r"[^A-Za-z0-9_.\-]")


def tool_name(assistant_name: str) -> str:
    """An assistant's name as an MCP tool name (`^[A-Za-z0-9_.-]{1,128}$`)."""
    return _NOT_A_TOOL_CHARACTER.sub("", re.sub(r"\s+", "_", assistant_name.strip()))[:128]


def _tools(offset: int) -> tuple[list[dict], int | None]:
    """One page of tools, from `offset` in the assistants' creation order; the
    next page's offset, or None. Assistants whose name maps to an earlier
    one's tool name, or whose graph has no input schema, are left out."""
    assistants_ensure_defaults()
    page = list(assistant_search(sort_by="created_at", sort_order="asc")[offset : offset + PAGE])
    tools, seen = [], set()
    for assistant in page:
        name = tool_name(assistant.name)
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            schema = graphs.get_graph(assistant.graph_id).get_input_jsonschema()
        except Exception:  # noqa: BLE001 - a graph without a JSON-able input is no tool
            log.warning("MCP: no input schema for %s, left out of the tools", assistant.name)
            continue
        tools.append(
            {
                "name": name,
                "title": assistant.name,
                "description": assistant.description
                or f"Runs the {assistant.name} assistant ({assistant.graph_id})",
                "inputSchema": {"type": "object", **schema},
            }
        )
    return tools, (offset + PAGE if len(page) == PAGE else None)


def _assistant_of(name: str) -> str | None:
    """The id of the one assistant (the caller may see) named as tool `name`."""
    assistants_ensure_defaults()
    ids = [
        str(a.assistant_id)
        for a in assistant_search().only("assistant_id", "name")
        if tool_name(a.name) == name
    ]
    return ids[0] if len(ids) == 1 else None


def _start(assistant_id: str, arguments: dict) -> Run:
    body = {"assistant_id": assistant_id, "input": arguments}
    return services.run_start(thread_id=None, data=validated(RunCreateIn, body), body=body)


class JsonRpcMessageIn(serializers.Serializer):
    """One JSON-RPC 2.0 message (documentation: the view reads it as sent)."""

    jsonrpc = serializers.ChoiceField(choices=["2.0"])
    id = serializers.JSONField(
        required=False, help_text="a string or integer; none: a notification"
    )
    method = serializers.CharField(required=False)
    params = serializers.DictField(required=False)


class JsonRpcResponseOut(serializers.Serializer):
    """A JSON-RPC 2.0 response: `result`, or `error` ({code, message})."""

    jsonrpc = serializers.CharField()
    id = serializers.JSONField()
    result = serializers.DictField(required=False)
    error = serializers.DictField(required=False)


class McpApi(AsyncAPIView):
    def perform_content_negotiation(self, request, force=False):
        # JSON whatever the client accepts: its Accept header is checked below (400).
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    @extend_schema(
        operation_id="mcp_post",
        summary="One JSON-RPC 2.0 message to the MCP server (Streamable HTTP, stateless)",
        tags=["mcp"],
        parameters=[
            OpenApiParameter(
                "Accept",
                str,
                OpenApiParameter.HEADER,
                description="application/json and/or text/event-stream",
            )
        ],
        request=JsonRpcMessageIn,
        responses={
            200: OpenApiResponse(JsonRpcResponseOut, description="a request's response"),
            202: OpenApiResponse(description="a notification or a response: accepted"),
            **errors(400, 422),
        },
    )
    async def post(self, request):
        accept = request.headers.get("Accept", "")
        if not any(kind in accept for kind in ("application/json", "text/event-stream", "*/*")):
            raise BadRequest("Accept must include application/json or text/event-stream")
        message = request.data
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise BadRequest('Not a JSON-RPC 2.0 message (no "jsonrpc": "2.0")')
        method, id_ = message.get("method"), message.get("id")
        if method is not None and not isinstance(method, str):
            raise BadRequest("A JSON-RPC method is a string")
        if id_ is None or isinstance(id_, bool) or not isinstance(id_, str | int):
            if id_ is None and (method or "result" in message or "error" in message):
                return Response(status=202)  # a notification, or a response to us
            raise BadRequest("A JSON-RPC request needs a string or integer id and a method")
        if not method:
            return Response(status=202)  # a response to a request we never send
        params = message.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("JSON-RPC params here are an object")
        return await self._request(id_, method, params)

    async def _request(self, id_: str | int, method: str, params: dict) -> Response:
        if method == "initialize":
            asked = params.get("protocolVersion")
            version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
            return _result(
                id_,
                {
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": False}},
                    "serverInfo": {"name": "cronsvc", "version": server_info()["version"]},
                },
            )
        if method == "ping":
            return _result(id_, {})
        if method == "tools/list":
            cursor = params.get("cursor") or 0
            try:
                offset = max(int(cursor), 0)
            except (TypeError, ValueError):
                return _error(id_, INVALID_PARAMS, f"Invalid cursor: {cursor!r}")
            tools, after = await offloop.run(_tools, offset)
            return _result(id_, {"tools": tools, **({"nextCursor": str(after)} if after else {})})
        if method == "tools/call":
            return await self._call(id_, params)
        return _error(id_, METHOD_NOT_FOUND, f"Method not found: {method}")

    async def _call(self, id_: str | int, params: dict) -> Response:
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(arguments, dict):
            return _error(id_, INVALID_PARAMS, "arguments must be an object")
        assistant_id = await offloop.run(_assistant_of, name) if isinstance(name, str) else None
        if assistant_id is None:
            return _error(id_, INVALID_PARAMS, f"Unknown tool: {name}")
        run = await offloop.run(_start, assistant_id, arguments)
        run = await waiters.run_wait(run)
        result = run_result(run)
        if run.status in (Run.Status.ERROR, Run.Status.TIMEOUT):
            error = result.get("__error__") or {"error": "Timeout", "message": run.error or ""}
            text = f"{error['error']}: {error['message']}" if error["message"] else error["error"]
            return _result(id_, {"isError": True, "content": [{"type": "text", "text": text}]})
        text = json.dumps(result, ensure_ascii=False, default=str)
        return _result(id_, {"content": [{"type": "text", "text": text}], "isError": False})


def _result(id_: str | int, result: dict) -> Response:
    return Response({"jsonrpc": "2.0", "id": id_, "result": result})


def _error(id_: str | int, code: int, message: str) -> Response:
    return Response({"jsonrpc": "2.0", "id": id_, "error": {"code": code, "message": message}})


class McpSlashApi(McpApi):
    """`/mcp/`, the path as the LangGraph Server's document writes it; documented
    once, as `/mcp`."""

    schema = None
