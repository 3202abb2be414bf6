"""One usage record per client request, with what it really took: the attempts of a
request that failed in the end and the deployment it last tried; the tokens and cost of
the embedding a `+context` request needed. Also the configured default max_tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from hexahub.gateway.usage import cost_usd
from tests.context.helpers import wait_for_index, write_project
from tests.gateway.conftest import Hub, hub_settings, models_file, running_hub
from tests.gateway.standins import behaviour
from tests.gateway.standins.server import StandinServer
from tests.gateway.standins.state import Fault

ASK = [{"role": "user", "content": "are you there"}]
EMBED_PRICE = 500.0  # dollars per million tokens, so an embedding's cost shows


def client(hub: Hub) -> openai.AsyncOpenAI:
    made = openai.AsyncOpenAI(base_url=hub.v1, api_key=hub.key, max_retries=0)
    hub.clients.append(made)
    return made


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_that_fails_after_retries_keeps_its_attempts_and_deployment(
    sdk: Hub, openai_upstream: StandinServer, stream: bool
) -> None:
    openai_upstream.state.inject(
        Fault(kind="status", status=503, times=100, path="/v1/chat/completions")
    )
    with pytest.raises(openai.InternalServerError):
        created = await client(sdk).chat.completions.create(
            model="gpt-test", messages=ASK, stream=stream
        )
        if stream:
            async for _ in created:  # type: ignore[union-attr]
                pass
    tries = sdk.settings.gateway_retries + 1
    assert len(openai_upstream.state.requests_to("/v1/chat/completions")) == tries
    [record] = [r for r in sdk.usage_records() if r["model"] == "gpt-test"]
    assert record["status"] == 503 and record["stream"] is stream
    assert record["attempts"] == tries
    assert record["provider"] == "openai" and record["upstream_model"] == "gpt-4o-mini"
    assert record["deployment_id"]
    assert record["cost_usd"] == 0 and record["prompt_tokens"] == 0


@pytest.fixture
def context_hub(
    tmp_path: Path,
    database_url: str,
    openai_upstream: StandinServer,
    anthropic_upstream: StandinServer,
    ollama_upstream: StandinServer,
) -> Iterator[Hub]:
    """A hub whose code context is embedded by the (priced) stand-in embedding model, and
    whose default max_tokens is not the usual one."""
    models = models_file(openai_upstream, anthropic_upstream, ollama_upstream)
    [embed] = next(m for m in models["models"] if m["name"] == "embed-test")["deployments"]
    embed.update(input_price=EMBED_PRICE, output_price=EMBED_PRICE)
    settings = hub_settings(
        tmp_path,
        database_url,
        models,
        context_embedding_model="embed-test",
        gateway_default_max_tokens=77,
    )
    with running_hub(settings) as hub:
        yield hub


async def index_project(hub: Hub, root: Path) -> None:
    created = hub.api(
        "POST", "/api/repos", json={"name": "demo", "source": "path", "location": str(root)}
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {hub.admin_token}"}
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as client:
        repo = await wait_for_index(client, headers, created.json()["id"])
    assert repo["state"] == "ready", repo


# The query is embedded only where the index has vectors: SQLite's always does, while the
# PostgreSQL test server has no pgvector (its index is full text only).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_context_embedding_is_part_of_the_request_record(
    context_hub: Hub, openai_upstream: StandinServer, tmp_path: Path
) -> None:
    hub = context_hub
    await index_project(hub, write_project(tmp_path / "project"))
    embeddings_before = len(openai_upstream.state.requests_to("/v1/embeddings"))
    question = "How is the invoice total with tax computed?"
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "gpt-test+context", "messages": [{"role": "user", "content": question}]},
            headers={"Authorization": f"Bearer {hub.key}"},
        )
    assert response.status_code == 200, response.text
    assert "src/billing.py" in response.headers["x-hexahub-context-citations"]
    # The query was embedded upstream, for this request.
    [query] = openai_upstream.state.requests_to("/v1/embeddings")[embeddings_before:]
    texts = query.body["input"] if isinstance(query.body["input"], list) else [query.body["input"]]
    embed_tokens = sum(behaviour.count_tokens(text) for text in texts)
    assert embed_tokens > 0

    request_id = response.headers["x-request-id"]
    [record] = [r for r in hub.usage_records() if r["request_id"] == request_id]
    usage = response.json()["usage"]
    chat_in, chat_out = hub.price("gpt-test")
    assert record["model"] == "gpt-test" and record["endpoint"] == "chat"
    assert record["key_id"] == hub.key_id and record["status"] == 200
    assert record["prompt_tokens"] == usage["prompt_tokens"] + embed_tokens
    assert record["completion_tokens"] == usage["completion_tokens"]
    expected = cost_usd(usage["prompt_tokens"], usage["completion_tokens"], chat_in, chat_out)
    expected += cost_usd(embed_tokens, 0, *hub.price("embed-test"))
    assert record["cost_usd"] == pytest.approx(expected)


async def test_default_max_tokens_is_the_setting(
    context_hub: Hub, anthropic_upstream: StandinServer
) -> None:
    async with openai.AsyncOpenAI(base_url=context_hub.v1, api_key=context_hub.key) as sdk:
        reply = await sdk.chat.completions.create(model="claude-test", messages=ASK)
    assert reply.choices[0].message.content
    sent = anthropic_upstream.state.last_request.body
    assert sent["max_tokens"] == context_hub.settings.gateway_default_max_tokens
