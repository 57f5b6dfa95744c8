"""`/mcp`: the assistants as MCP tools, through the official MCP client (the
`mcp` package's Streamable HTTP client and ClientSession) against the live
server, with a real worker running the tool calls; and the transport's edges
over plain HTTP."""

import asyncio
import json

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

from runs.models import Run
from tests.auth_recipes import owner_auth

pytestmark = [pytest.mark.django_db(transaction=True)]

QUESTION = {"messages": [{"role": "user", "content": "What time is it?"}]}
JSON_AND_SSE = {"Accept": "application/json, text/event-stream"}


def with_session(url: str, use):
    async def main():
        async with (
            streamable_http_client(f"{url}/mcp") as (read, write, _),
            ClientSession(read, write) as session,
        ):
            init = await session.initialize()
            return init, await use(session)

    return asyncio.run(main())


def test_the_assistants_are_tools_and_a_call_runs_one(live_server, worker):
    async def use(session):
        tools = await session.list_tools()
        answer = await session.call_tool("agent", QUESTION)
        failed = await session.call_tool("flaky", {**QUESTION, "fail_times": 1})
        return tools, answer, failed

    init, (tools, answer, failed) = with_session(live_server.url, use)

    assert init.serverInfo.name == "cronsvc"
    assert init.capabilities.tools is not None
    by_name = {tool.name: tool for tool in tools.tools}
    assert {"agent", "slow", "memory", "flaky"} <= set(by_name)
    assert by_name["agent"].inputSchema["type"] == "object"
    assert "messages" in by_name["agent"].inputSchema["properties"]
    assert not answer.isError
    values = json.loads(answer.content[0].text)
    assert values["messages"][-1]["content"].startswith("It is ")
    assert Run.objects.filter(status="success").count() >= 1
    assert failed.isError and failed.content[0].text  # the run's error, as text


def test_an_unknown_tool_is_a_jsonrpc_error(live_server):
    async def use(session):
        with pytest.raises(McpError, match="Unknown tool: nope"):
            await session.call_tool("nope", {})
        return await session.send_ping()

    with_session(live_server.url, use)


def rpc(url: str, message, headers=JSON_AND_SSE) -> httpx.Response:
    return httpx.post(f"{url}/mcp", json=message, headers=headers)


def test_the_transports_edges(live_server):
    url = live_server.url

    unknown = rpc(url, {"jsonrpc": "2.0", "id": 7, "method": "resources/list"})
    assert unknown.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32601, "message": "Method not found: resources/list"},
    }
    old = rpc(url, {"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": {}})
    assert old.json()["result"]["protocolVersion"] == "2025-11-25"
    asked = {"protocolVersion": "2024-11-05"}
    kept = rpc(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": asked})
    assert kept.json()["result"]["protocolVersion"] == "2024-11-05"
    assert rpc(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
    assert rpc(url, {"jsonrpc": "2.0", "id": 3, "result": {}}).status_code == 202
    bad_cursor = {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"cursor": "x"}}
    assert rpc(url, bad_cursor).json()["error"]["code"] == -32602
    bad_arguments = {"name": "agent", "arguments": [1]}
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": bad_arguments}
    assert rpc(url, call).json()["error"]["code"] == -32602
    for message, headers in [
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, JSON_AND_SSE),
        ([1, 2], JSON_AND_SSE),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, JSON_AND_SSE),
        ({"jsonrpc": "2.0"}, JSON_AND_SSE),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}, JSON_AND_SSE),
        ({"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Accept": "text/html"}),
    ]:
        answer = rpc(url, message, headers)
        assert (message, answer.status_code) == (message, 400)
        assert answer.json()["detail"]
    anything = rpc(url, {"jsonrpc": "2.0", "id": 9, "method": "ping"}, {"Accept": "*/*"})
    assert anything.json() == {"jsonrpc": "2.0", "id": 9, "result": {}}
    assert httpx.get(f"{url}/mcp").status_code == 405
    assert httpx.delete(f"{url}/mcp").status_code == 405
    assert Run.objects.count() == 0


def test_api_keys_and_custom_auth_apply(live_server, settings):
    url = live_server.url
    tools_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    settings.CRONSVC_API_KEYS = ["k1"]
    assert rpc(url, tools_list).status_code == 403
    assert rpc(url, tools_list, {**JSON_AND_SSE, "x-api-key": "k1"}).json()["result"]["tools"]

    settings.CRONSVC_AUTH = owner_auth()
    as_ada = {**JSON_AND_SSE, "Authorization": "Bearer token-ada"}
    as_bob = {**JSON_AND_SSE, "Authorization": "Bearer token-bob"}
    rpc_create = {"graph_id": "agent", "name": "ada helper"}
    assert httpx.post(f"{url}/assistants", json=rpc_create, headers=as_ada).status_code == 200

    def names(headers) -> list[str]:
        return [tool["name"] for tool in rpc(url, tools_list, headers).json()["result"]["tools"]]

    # The system's default assistants are everyone's (custom auth); hers are hers.
    assert "ada_helper" in names(as_ada) and "agent" in names(as_ada)
    assert "ada_helper" not in names(as_bob) and "agent" in names(as_bob)
    call = {"name": "ada_helper", "arguments": QUESTION}
    refused = rpc(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}, as_bob)
    assert refused.json()["error"] == {"code": -32602, "message": "Unknown tool: ada_helper"}
    assert rpc(url, tools_list).status_code == 401
    assert Run.objects.count() == 0
