"""Bad input to /v1 is the client's 400, in the shape of the API it called (OpenAI's on
/v1/chat/completions, /v1/completions and /v1/embeddings, Anthropic's on /v1/messages*),
naming the field: nothing is sent upstream, no usage record says 500 and no traceback is
logged. Bodies are sent as raw bytes, since SDKs cannot send most of them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hexahub.gateway.validate import MAX_JSON_DEPTH
from tests.gateway.conftest import Hub, hub_settings, models_file, running_hub
from tests.gateway.standins.server import StandinServer
from tests.gateway.standins.state import StandinState

ASK = [{"role": "user", "content": "hello"}]
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
# One hundred thousand opening brackets: far past what the JSON parser can recurse into.
UNCLOSED = b"[" * 100_000


@pytest.fixture
def upstreams(
    openai_upstream: StandinServer,
    anthropic_upstream: StandinServer,
    ollama_upstream: StandinServer,
) -> list[StandinServer]:
    return [openai_upstream, anthropic_upstream, ollama_upstream]


@pytest.fixture
def quiet(
    hub: Hub, upstreams: list[StandinServer], caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """After the test: nothing reached an upstream, no request was recorded as a server
    error, and nothing was logged with a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    for upstream in upstreams:
        assert upstream.state.requests == [], upstream
    assert [r for r in hub.usage_records() if r["status"] >= 500] == []
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]


async def post(hub: Hub, path: str, raw: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {hub.key}", "Content-Type": "application/json"}
    if path.startswith("/v1/messages"):
        headers["anthropic-version"] = "2023-06-01"
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as client:
        return await client.post(path, content=raw, headers=headers)


def openai_refusal(response: httpx.Response, param: str | None = None) -> str:
    """The message of an OpenAI-shaped 400 (naming `param` when given)."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
        assert error["message"].startswith(f"{param}: ")
    return str(error["message"])


def anthropic_refusal(response: httpx.Response, param: str | None = None) -> str:
    """The message of an Anthropic-shaped 400 (naming `param` when given)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    message = str(body["error"]["message"])
    if param is not None:
        assert message.startswith(f"{param}: ")
    return message


def refusal(path: str, response: httpx.Response, param: str | None = None) -> str:
    if path.startswith("/v1/messages"):
        return anthropic_refusal(response, param)
    return openai_refusal(response, param)


def valid_body(path: str) -> dict:
    if path == "/v1/embeddings":
        return {"model": "embed-test", "input": "hello"}
    if path == "/v1/completions":
        return {"model": "gpt-test", "prompt": "hello"}
    if path == "/v1/messages":
        return {"model": "claude-test", "max_tokens": 16, "messages": ASK}
    if path == "/v1/messages/count_tokens":
        return {"model": "claude-test", "messages": ASK}
    return {"model": "gpt-test", "messages": ASK}


def with_field(body: dict, name: str, raw_value: bytes) -> bytes:
    """`body` as JSON bytes with one more field whose value is given as raw JSON."""
    encoded = json.dumps(body).encode()
    return encoded[:-1] + b', "' + name.encode() + b'": ' + raw_value + b"}"


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", OPENAI_ROUTES + ANTHROPIC_ROUTES)
async def test_unclosed_deep_nesting_is_a_400(hub: Hub, quiet: None, path: str) -> None:
    response = await post(hub, path, UNCLOSED)
    assert "nests deeper" in refusal(path, response)


@pytest.mark.parametrize("path", OPENAI_ROUTES + ANTHROPIC_ROUTES)
async def test_deep_nesting_inside_a_valid_body_names_the_field(
    hub: Hub, quiet: None, path: str
) -> None:
    # Deep enough to overflow a recursive walk of the body, yet parseable.
    raw = with_field(valid_body(path), "metadata", nested(MAX_JSON_DEPTH * 8))
    response = await post(hub, path, raw)
    assert "nests deeper" in refusal(path, response, "metadata")


async def test_nesting_up_to_the_limit_is_accepted(
    hub: Hub, openai_upstream: StandinServer
) -> None:
    schema: dict = {"type": "string"}
    # Each level adds two (the object and its properties); some room is left for the
    # levels around the schema.
    for _ in range((MAX_JSON_DEPTH - 12) // 2):
        schema = {"type": "object", "properties": {"inner": schema}}
    tool = {"type": "function", "function": {"name": "deep", "parameters": schema}}
    body = {"model": "gpt-test", "messages": ASK, "tools": [tool], "tool_choice": "none"}
    response = await post(hub, "/v1/chat/completions", json.dumps(body).encode())
    assert response.status_code == 200, response.text
    assert openai_upstream.state.last_request.body["tools"] == [tool]


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        (
            "/v1/chat/completions",
            b'{"model": "gpt-test", "messages": [{"role": "user", "content": "a \\ud800 b"}]}',
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "gpt-test", "messages": [{"role": "user", "content": '
            b'[{"type": "text", "text": "x"}, {"type": "text", "text": "\\udfff"}]}]}',
            "messages[0].content[1].text",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], '
            b'"metadata": {"\\ud800": "x"}}',
            "metadata",
        ),
        ("/v1/completions", b'{"model": "gpt-test", "prompt": "\\udbff"}', "prompt"),
        ("/v1/embeddings", b'{"model": "embed-test", "input": ["ok", "\\ud800"]}', "input[1]"),
        (
            "/v1/messages",
            b'{"model": "claude-test", "max_tokens": 8, '
            b'"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
            "messages.0.content.0.text",
        ),
        (
            "/v1/messages/count_tokens",
            b'{"model": "claude-test", "system": "\\ud800", '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "system",
        ),
    ],
)
async def test_a_lone_surrogate_is_refused_naming_the_field(
    hub: Hub, quiet: None, path: str, raw: bytes, param: str
) -> None:
    response = await post(hub, path, raw)
    assert "surrogate" in refusal(path, response, param)


async def test_a_surrogate_pair_is_text(hub: Hub, openai_upstream: StandinServer) -> None:
    raw = (
        b'{"model": "gpt-test", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    )
    response = await post(hub, "/v1/chat/completions", raw)
    assert response.status_code == 200, response.text
    assert "\U0001f600" in response.json()["choices"][0]["message"]["content"]


async def test_an_unknown_content_part_type_is_refused(hub: Hub, quiet: None) -> None:
    content = [{"type": "text", "text": "hi"}, {"type": "nope"}]
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": content}]}
    response = await post(hub, "/v1/chat/completions", json.dumps(body).encode())
    assert "'nope'" in openai_refusal(response, "messages[0].content[1].type")

    anthropic_body = {
        "model": "claude-test",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": content}],
    }
    response = await post(hub, "/v1/messages", json.dumps(anthropic_body).encode())
    assert "messages.0.content.1" in anthropic_refusal(response)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/auth/login"), ("PUT", "/api/workspaces/{workspace}/keys/{key}/limits")],
)
async def test_deep_nesting_to_an_api_route_is_a_400(
    hub: Hub, quiet: None, method: str, path: str
) -> None:
    url = hub.url + path.format(workspace=hub.workspace_id, key=hub.key_id)
    headers = {"Authorization": f"Bearer {hub.admin_token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as client:
        unparsable = await client.request(method, url, content=UNCLOSED, headers=headers)
        assert unparsable.status_code == 400, unparsable.text
        # Parsable, but no field of these routes takes nested lists: invalid.
        raw = with_field({"rpm": 1}, "tpm", nested(MAX_JSON_DEPTH * 8))
        invalid = await client.request(method, url, content=raw, headers=headers)
        assert invalid.status_code == 422, invalid.text
    for response in (unparsable, invalid):
        error = response.json()["error"]
        assert error["code"] and error["message"]


async def test_deeply_nested_tool_arguments_are_refused_naming_the_field(
    hub: Hub, quiet: None
) -> None:
    # Arguments are a JSON string inside the body: only translating them for Anthropic
    # parses them.
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    call["function"]["arguments"] = UNCLOSED.decode()
    body = {
        "model": "claude-test",
        "messages": [
            {"role": "user", "content": "call f"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
    }
    response = await post(hub, "/v1/chat/completions", json.dumps(body).encode())
    message = openai_refusal(response)
    assert message.startswith("messages[1].tool_calls[0].function.arguments: ")
    [record] = hub.usage_records()
    assert record["status"] == 400


def deep_json_upstream() -> Starlette:
    """An OpenAI-compatible server whose answers are JSON nested far too deep to use."""

    async def answer(request: Request) -> Response:
        await request.body()
        return Response(nested(100_000), media_type="application/json")

    app = Starlette(routes=[Route("/v1/{path:path}", answer, methods=["GET", "POST"])])
    app.state.standin = StandinState(models=[])
    return app


@pytest.fixture
def deep_hub(
    tmp_path: Path,
    database_url: str,
    openai_upstream: StandinServer,
    anthropic_upstream: StandinServer,
    ollama_upstream: StandinServer,
) -> Iterator[Hub]:
    with StandinServer(deep_json_upstream()) as deep:
        models = models_file(openai_upstream, anthropic_upstream, ollama_upstream)
        models["providers"].append(
            {"name": "deep", "kind": "openai_compatible", "base_url": deep.url("/v1")}
        )
        models["models"].append(
            {"name": "deep-test", "deployments": [{"provider": "deep", "model": "m"}]}
        )
        with running_hub(hub_settings(tmp_path, database_url, models)) as running:
            yield running


async def test_an_upstream_answering_too_deep_json_is_a_502(
    deep_hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    body = {"model": "deep-test", "messages": ASK}
    response = await post(deep_hub, "/v1/chat/completions", json.dumps(body).encode())
    assert response.status_code == 502, response.text
    assert "not JSON" in response.json()["error"]["message"]
    [record] = deep_hub.usage_records()
    assert record["status"] == 502 and record["attempts"] == deep_hub.settings.gateway_retries + 1
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
