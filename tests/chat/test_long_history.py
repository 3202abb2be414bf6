"""A long conversation is sized for the model that answers it: the system prompt and the
newest turns that fit its context window go, room is left for the answer, and the answer
says how many earlier messages were left out.

Two models answer here: `gpt-test` on the OpenAI stand-in, whose provider declares a small
window (so what is sent can be read back exactly), and the shipped `local-chat` (real
llama.cpp, its window HEXAHUB_LOCAL_CONTEXT_SIZE), which refuses a prompt longer than its
window: a conversation far longer than that must still be answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hexahub.chat import history
from hexahub.chat.models import Message
from hexahub.gateway import service as gateway_service
from hexahub.localmodels import shipped
from hexahub.settings import Settings
from tests.chat.conftest import MODEL, new_conversation, sse_events
from tests.conftest import make_settings
from tests.gateway.standins.server import StandinServer
from tests.identity.conftest import Person

STANDIN_WINDOW = 1024
LOCAL_CHAT = "local-chat"
SENTENCE = "The quick brown fox jumps over the lazy dog beside the quiet river bank. "


@pytest.fixture
def settings(tmp_path: Path, database_url: str, openai_upstream: StandinServer) -> Settings:
    if not shipped.chat_available():  # required here, never skipped
        pytest.fail(f"these tests need the shipped chat model; run: {shipped.INSTALL_ALL}")
    path = tmp_path / "models.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": [
                    {
                        "name": "openai",
                        "kind": "openai",
                        "base_url": openai_upstream.url("/v1"),
                        "api_key": openai_upstream.state.api_key,
                        "local": False,
                        "timeout_seconds": 5,
                        "settings": {"context_windows": {"gpt-4o-mini": STANDIN_WINDOW}},
                    },
                ],
                "models": [
                    {"name": MODEL, "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}
                ],
            }
        )
    )
    # No `local` provider in the file: the built-in one serves local-chat beside it.
    return make_settings(
        tmp_path,
        database_url=database_url,
        models_file=path,
        gateway_retries=0,
        gateway_health_interval_seconds=0,
        rate_limit_ip_per_minute=0,
    )


def turn_text(number: int) -> str:
    """Long questions and short answers: a conversation a small model answers briefly."""
    if number % 2:
        return "Noted."
    return f"Note {number // 2}, reply with one word. " + SENTENCE * 9


async def store_turns(client: httpx.AsyncClient, conversation_id: str, count: int) -> list[str]:
    """`count` stored messages, user and assistant in turn, without asking a model."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    texts = [turn_text(n) for n in range(count)]
    async with runtime.db.sessions() as db:
        for position, text in enumerate(texts):
            db.add(
                Message(
                    conversation_id=conversation_id,
                    position=position,
                    role="user" if position % 2 == 0 else "assistant",
                    content=text,
                    status="complete",
                )
            )
        await db.commit()
    return texts


def estimated(texts: list[str]) -> int:
    return sum(history.message_tokens(t) for t in texts)


async def send(
    client: httpx.AsyncClient, person: Person, cid: str, text: str, **fields: Any
) -> httpx.Response:
    return await client.post(
        f"/api/conversations/{cid}/messages",
        headers=person.headers,
        json={"content": text, **fields},
    )


async def test_the_gateway_knows_each_models_window(
    app_client: httpx.AsyncClient, settings: Settings
) -> None:
    snapshot = app_client.app.state.gateway.router.snapshot  # type: ignore[attr-defined]
    assert gateway_service.context_window(snapshot, MODEL) == STANDIN_WINDOW
    assert gateway_service.context_window(snapshot, LOCAL_CHAT) == settings.local_context_size
    unknown = gateway_service.context_window(snapshot, "no-such-model")
    assert unknown == gateway_service.DEFAULT_CONTEXT_WINDOW


async def test_what_is_sent_fits_the_window_newest_turns_first(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
) -> None:
    system_prompt = "Answer briefly. " * 10
    cid = (await new_conversation(app_client, alice, system_prompt=system_prompt))["id"]
    earlier = await store_turns(app_client, cid, 60)
    assert estimated(earlier) > 4 * STANDIN_WINDOW

    response = await send(app_client, alice, cid, "And now?")
    assert response.status_code == 200, response.text
    answer = response.json()
    sent = openai_upstream.state.last_request.body["messages"]
    # The system prompt first, the question last, and between them the newest turns,
    # without gaps; the answer counts the turns that were left out.
    assert sent[0] == {"role": "system", "content": system_prompt}
    assert sent[-1] == {"role": "user", "content": "And now?"}
    kept = [m["content"] for m in sent[1:-1]]
    assert kept and kept == earlier[len(earlier) - len(kept) :]
    assert answer["left_out"] == len(earlier) - len(kept) > 0
    room = history.answer_room(STANDIN_WINDOW)
    assert estimated([m["content"] for m in sent]) + history.PROMPT_TOKENS <= STANDIN_WINDOW - room
    # One more turn would not have fitted.
    assert (
        estimated([m["content"] for m in sent] + [earlier[-len(kept) - 1]])
        + (history.PROMPT_TOKENS)
        > STANDIN_WINDOW - room
    )

    detail = await app_client.get(f"/api/conversations/{cid}", headers=alice.headers)
    stored = detail.json()["messages"]
    assert stored[-1]["id"] == answer["id"] and stored[-1]["left_out"] == answer["left_out"]
    assert all(m["left_out"] == 0 for m in stored[:-1])


async def test_a_short_conversation_is_sent_whole(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
) -> None:
    cid = (await new_conversation(app_client, alice))["id"]
    earlier = await store_turns(app_client, cid, 2)
    response = await send(app_client, alice, cid, "Short?")
    assert response.status_code == 200 and response.json()["left_out"] == 0
    sent = openai_upstream.state.last_request.body["messages"]
    assert [m["content"] for m in sent] == [*earlier, "Short?"]


async def test_the_local_model_answers_a_conversation_far_longer_than_its_window(
    app_client: httpx.AsyncClient, alice: Person, settings: Settings
) -> None:
    cid = (await new_conversation(app_client, alice, model=LOCAL_CHAT))["id"]
    earlier = await store_turns(app_client, cid, 80)
    window = settings.local_context_size
    assert estimated(earlier) > 3 * window

    response = await send(app_client, alice, cid, "Say yes.", stream=True)
    assert response.status_code == 200, response.text
    events = sse_events(response)
    assert events[-1]["type"] == "done", events[-1]
    answer = events[-1]["message"]
    assert answer["status"] == "complete" and answer["content"].strip()
    # llama.cpp's own count of the prompt it read: within the window, answer included.
    assert answer["prompt_tokens"] + answer["completion_tokens"] <= window
    assert 0 < answer["left_out"] < len(earlier)
