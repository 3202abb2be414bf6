"""Answers: streamed token by token, stored however they end (finished, stopped, the
reader gone, the model failing), with usage and cost; regenerate and edit-and-resend;
repository context with citations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hexahub.chat import replies, service
from hexahub.chat.models import Message
from hexahub.context import answers
from hexahub.context.answers import Citation, Retrieved
from hexahub.identity.authz import Principal
from hexahub.identity.models import User
from tests.chat.conftest import MODEL, cost, new_conversation, sse_events
from tests.gateway.standins.server import StandinServer
from tests.gateway.standins.state import Fault
from tests.identity.conftest import Person

CHAT_PATH = "/v1/chat/completions"


async def detail(client: httpx.AsyncClient, person: Person, cid: str) -> dict[str, Any]:
    response = await client.get(f"/api/conversations/{cid}", headers=person.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_streamed_answer_token_by_token_with_usage_and_cost(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    response = await app_client.post(
        f"/api/conversations/{cid}/messages",
        headers=alice.headers,
        json={"content": "hello brave new world", "stream": True},
    )
    assert response.status_code == 200, response.text
    events = sse_events(response)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    deltas = [e["text"] for e in events if e["type"] == "delta"]
    assert deltas == ["echo:", " hello", " brave", " new", " world"]
    start, done = events[0], events[-1]
    assert start["message"]["status"] == "streaming"
    assert start["user_message"]["content"] == "hello brave new world"
    answer = done["message"]
    assert answer["id"] == start["message"]["id"]
    assert answer["status"] == "complete" and answer["content"] == "echo: hello brave new world"
    assert answer["model"] == MODEL
    assert (answer["prompt_tokens"], answer["completion_tokens"]) == (4, 5)
    assert answer["cost_usd"] == pytest.approx(cost(4, 5))
    assert answer["ttft_ms"] is not None and answer["ttft_ms"] >= 0

    # The upstream was asked for usage in the stream.
    sent = openai_upstream.state.last_request.body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"] == [{"role": "user", "content": "hello brave new world"}]

    stored = await detail(app_client, alice, cid)
    assert [(m["role"], m["status"], m["content"]) for m in stored["messages"]] == [
        ("user", "complete", "hello brave new world"),
        ("assistant", "complete", "echo: hello brave new world"),
    ]
    assert stored["messages"][1]["cost_usd"] == pytest.approx(cost(4, 5))


async def test_json_answer_and_history_with_system_prompt(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice, system_prompt="Be terse."))["id"]
    first = await app_client.post(
        f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": "one"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["content"] == "echo: one" and first.json()["status"] == "complete"
    second = await app_client.post(
        f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": "two"}
    )
    assert second.json()["content"] == "echo: two"
    assert openai_upstream.state.last_request.body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
    ]


async def test_failure_mid_stream_keeps_the_partial_text(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    # The role chunk, "echo:", " alpha", then the provider's in-stream error.
    openai_upstream.state.inject(
        Fault(kind="stream_error", status=500, after_events=3, path=CHAT_PATH)
    )
    response = await app_client.post(
        f"/api/conversations/{cid}/messages",
        headers=alice.headers,
        json={"content": "alpha beta gamma", "stream": True},
    )
    events = sse_events(response)
    assert [e["text"] for e in events if e["type"] == "delta"] == ["echo:", " alpha"]
    last = events[-1]
    assert last["type"] == "error" and last["error"]["message"]
    assert last["message"]["status"] == "failed"
    assert last["message"]["content"] == "echo: alpha"

    stored = (await detail(app_client, alice, cid))["messages"][-1]
    assert stored["status"] == "failed" and stored["content"] == "echo: alpha"
    assert stored["error"]

    # A failed answer is not sent back to the model; the next message works.
    again = await app_client.post(
        f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": "retry"}
    )
    assert again.status_code == 200 and again.json()["content"] == "echo: retry"
    assert openai_upstream.state.last_request.body["messages"] == [
        {"role": "user", "content": "alpha beta gamma"},
        {"role": "user", "content": "retry"},
    ]


async def test_failure_before_the_first_token_is_a_stored_failure(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    openai_upstream.state.inject(
        Fault(kind="status", status=500, times=20, path=CHAT_PATH, message="the model is down")
    )
    response = await app_client.post(
        f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": "hi"}
    )
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert error["details"]["message"]["status"] == "failed"
    stored = (await detail(app_client, alice, cid))["messages"]
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "failed"),
    ]


async def _reply(client: httpx.AsyncClient, person: Person, cid: str, text: str):
    """The answer as the pages get it: straight from the service."""
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    async with gateway.runtime.db.sessions() as db:
        user = await db.get(User, person.user_id)
        assert user is not None
        target = await service.conversation_access(db, Principal(user, "session"), cid, "change")
        return await replies.send_message(db, gateway, target, text)


async def _stored(client: httpx.AsyncClient, message_id: str) -> Message:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    async with runtime.db.sessions() as db:
        message = await db.get(Message, message_id)
        assert message is not None
        return message


async def test_a_reader_that_goes_away_keeps_the_partial_text(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    # Two words, then the model goes silent.
    openai_upstream.state.inject(Fault(kind="stall", after_events=3, seconds=30, path=CHAT_PATH))
    reply = await _reply(app_client, alice, cid, "one two three")
    events = reply.__aiter__()
    seen = [await events.__anext__() for _ in range(3)]
    assert [e["type"] for e in seen] == ["start", "delta", "delta"]
    assert (await _stored(app_client, reply.message_id)).status == "streaming"
    await events.aclose()  # type: ignore[attr-defined]  # as a dropped connection does

    stored = await _stored(app_client, reply.message_id)
    assert stored.status == "stopped" and stored.content == "echo: one"
    assert stored.prompt_tokens > 0 and stored.completion_tokens > 0


async def test_the_stop_button_ends_the_answer_and_keeps_its_text(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    openai_upstream.state.inject(Fault(kind="stall", after_events=3, seconds=30, path=CHAT_PATH))
    reply = await _reply(app_client, alice, cid, "one two three")
    events = reply.__aiter__()
    seen = [await events.__anext__() for _ in range(3)]
    assert seen[-1] == {"type": "delta", "text": " one"}

    # While it streams, another message is refused...
    busy = await app_client.post(
        f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": "more"}
    )
    assert busy.status_code == 409
    # ... and the stop route (as the pages' button) ends it.
    stop = await app_client.post(f"/api/conversations/{cid}/stop", headers=alice.headers)
    assert stop.status_code == 200 and stop.json() == {"stopped": True}
    rest = [event async for event in events]
    assert [e["type"] for e in rest] == ["done"]
    assert rest[0]["message"]["status"] == "stopped"
    assert rest[0]["message"]["content"] == "echo: one"
    stored = await _stored(app_client, reply.message_id)
    assert stored.status == "stopped" and stored.content == "echo: one"
    # The model worked before the stop but sent no usage: an estimate is kept, not zero.
    assert stored.prompt_tokens > 0
    assert stored.completion_tokens == len("echo: one") // 4
    assert stored.cost_usd == pytest.approx(cost(stored.prompt_tokens, stored.completion_tokens))

    nothing = await app_client.post(f"/api/conversations/{cid}/stop", headers=alice.headers)
    assert nothing.json() == {"stopped": False}
    # A stopped answer is part of the conversation; talking goes on.
    after = await app_client.post(
        f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": "four"}
    )
    assert after.status_code == 200 and after.json()["content"] == "echo: four"


async def test_regenerate_replaces_the_last_answer(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    nothing = await app_client.post(f"/api/conversations/{cid}/regenerate", headers=alice.headers)
    assert nothing.status_code == 422
    for text in ("first", "second"):
        answered = await app_client.post(
            f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": text}
        )
        assert answered.status_code == 200
    before = (await detail(app_client, alice, cid))["messages"]
    old_answer = before[-1]

    response = await app_client.post(
        f"/api/conversations/{cid}/regenerate", headers=alice.headers, json={"stream": True}
    )
    events = sse_events(response)
    assert events[0]["user_message"] is None
    new_answer = events[-1]["message"]
    assert new_answer["status"] == "complete" and new_answer["content"] == "echo: second"
    assert new_answer["replaces_id"] == old_answer["id"] and new_answer["id"] != old_answer["id"]

    after = (await detail(app_client, alice, cid))["messages"]
    assert [m["id"] for m in after[:3]] == [m["id"] for m in before[:3]]
    assert [m["id"] for m in after] == [m["id"] for m in before[:3]] + [new_answer["id"]]
    # The model saw the conversation up to the last question, not the replaced answer.
    assert openai_upstream.state.last_request.body["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]


async def test_edit_and_resend_replaces_everything_after_the_message(
    app_client: httpx.AsyncClient, alice: Person, openai_upstream: StandinServer
):
    cid = (await new_conversation(app_client, alice))["id"]
    for text in ("first", "second", "third"):
        await app_client.post(
            f"/api/conversations/{cid}/messages", headers=alice.headers, json={"content": text}
        )
    before = (await detail(app_client, alice, cid))["messages"]
    assert len(before) == 6
    second = before[2]

    response = await app_client.patch(
        f"/api/conversations/{cid}/messages/{second['id']}",
        headers=alice.headers,
        json={"content": "second, edited"},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["content"] == "echo: second, edited"
    assert answer["replaces_id"] == before[3]["id"]

    after = (await detail(app_client, alice, cid))["messages"]
    assert [(m["role"], m["content"]) for m in after] == [
        ("user", "first"),
        ("assistant", "echo: first"),
        ("user", "second, edited"),
        ("assistant", "echo: second, edited"),
    ]
    assert after[2]["id"] == second["id"] and after[2]["edited_at"] is not None

    # Only user messages can be edited, and only in their own conversation.
    refused = await app_client.patch(
        f"/api/conversations/{cid}/messages/{after[1]['id']}",
        headers=alice.headers,
        json={"content": "rewrite the answer"},
    )
    assert refused.status_code == 422
    other = (await new_conversation(app_client, alice))["id"]
    elsewhere = await app_client.patch(
        f"/api/conversations/{other}/messages/{second['id']}",
        headers=alice.headers,
        json={"content": "x"},
    )
    assert elsewhere.status_code == 404
    assert len((await detail(app_client, alice, cid))["messages"]) == 4


async def test_repository_context_adds_passages_and_citations(
    app_client: httpx.AsyncClient,
    alice: Person,
    openai_upstream: StandinServer,
    monkeypatch: pytest.MonkeyPatch,
):
    asked: list[dict[str, Any]] = []

    async def retrieve(runtime, db, workspace_id, question, *, repo_ids=None, **kwargs):
        asked.append({"workspace_id": workspace_id, "question": question, "repo_ids": repo_ids})
        citation = Citation(1, "repo-1", "infra", "deploy/app.py", 3, 9, "/code/app.py#L3-L9")
        return Retrieved(citations=[citation], prompt="PASSAGES [1] deploy/app.py")

    monkeypatch.setattr(answers, "retrieve", retrieve)
    plain = (await new_conversation(app_client, alice))["id"]
    await app_client.post(
        f"/api/conversations/{plain}/messages", headers=alice.headers, json={"content": "hi"}
    )
    assert asked == []  # no context unless asked for

    cid = (await new_conversation(app_client, alice, use_repo_context=True))["id"]
    response = await app_client.post(
        f"/api/conversations/{cid}/messages",
        headers=alice.headers,
        json={"content": "where is the deploy", "stream": True},
    )
    events = sse_events(response)
    context = next(e for e in events if e["type"] == "context")
    assert context["citations"][0]["path"] == "deploy/app.py"
    done = events[-1]["message"]
    assert done["citations"] == [
        {
            "number": 1,
            "repo_id": "repo-1",
            "repo_name": "infra",
            "path": "deploy/app.py",
            "start_line": 3,
            "end_line": 9,
            "url": "/code/app.py#L3-L9",
        }
    ]
    assert asked[-1] == {
        "workspace_id": alice.workspace_id,
        "question": "where is the deploy",
        "repo_ids": None,
    }
    sent = openai_upstream.state.last_request.body["messages"]
    assert {"role": "system", "content": "PASSAGES [1] deploy/app.py"} in sent
    assert sent[-1] == {"role": "user", "content": "where is the deploy"}

    # A mention of @name asks for that repository, even without the conversation's flag.
    await app_client.post(
        f"/api/conversations/{plain}/messages",
        headers=alice.headers,
        json={"content": "what does @infra deploy?"},
    )
    assert asked[-1]["repo_ids"] == ["infra"]
