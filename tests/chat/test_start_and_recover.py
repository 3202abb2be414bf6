"""Starting a conversation with its first message (nothing stored when it is refused),
telling chat models from embedding models, and answers a stopped server left streaming."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from hexahub.chat import replies, service
from hexahub.chat.models import Conversation, Message, MessageStatus
from hexahub.core.db import new_id, utcnow
from hexahub.core.errors import HexaHubError
from hexahub.gateway import service as gateway_service
from hexahub.gateway.engine import Gateway
from hexahub.gateway.providers.base import ProviderConfig
from hexahub.identity.authz import Principal, workspace_access
from hexahub.identity.models import Role, User
from tests.chat.conftest import MODEL, new_conversation
from tests.identity.conftest import Person


def gateway_of(client: httpx.AsyncClient) -> Gateway:
    gateway: Gateway = client.app.state.gateway  # type: ignore[attr-defined]
    return gateway


async def conversation_count(client: httpx.AsyncClient) -> tuple[int, int]:
    async with gateway_of(client).runtime.db.sessions() as db:
        conversations = await db.scalar(select(func.count()).select_from(Conversation))
        messages = await db.scalar(select(func.count()).select_from(Message))
        return int(conversations or 0), int(messages or 0)


async def start(client: httpx.AsyncClient, person: Person, content: str, **options: str) -> str:
    """Start a conversation through the service; the finished answer's text."""
    gateway = gateway_of(client)
    async with gateway.runtime.db.sessions() as db:
        user = await db.get(User, person.user_id)
        assert user is not None
        access = await workspace_access(
            db, Principal(user, "session"), person.workspace_id, Role.viewer, "read"
        )
        conversation, reply = await replies.start_conversation(
            db, gateway, access, content, **options
        )
        assert conversation.title == content[:80]
        answer = await reply.finish()
        assert answer["conversation_id"] == conversation.id
        return str(answer["content"])


async def add_embedding_route(client: httpx.AsyncClient, admin: Person) -> None:
    """An OpenAI-compatible provider that declares `vectors-v2` an embedding model."""
    created = await client.post(
        "/api/gateway/providers",
        headers=admin.headers,
        json={
            "name": "vectors",
            "kind": "openai_compatible",
            "base_url": "http://127.0.0.1:9/v1",
            "local": False,
            "settings": {"embedding_models": ["vectors-v2"]},
        },
    )
    assert created.status_code == 201, created.text
    for name, upstream in (("vectors", "vectors-v2"), ("ada", "text-embedding-3-small")):
        model = await client.post(
            "/api/gateway/models",
            headers=admin.headers,
            json={"name": name, "deployments": [{"provider": "vectors", "model": upstream}]},
        )
        assert model.status_code == 201, model.text


async def test_a_first_message_starts_a_conversation_in_one_go(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    text = await start(app_client, alice, "hello there", model=MODEL)
    assert text
    assert await conversation_count(app_client) == (1, 2)


async def test_a_refused_first_message_leaves_nothing_behind(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    await add_embedding_route(app_client, alice)
    refusals = [
        ({"content": "   "}, "the message is empty"),
        ({"content": "hi", "model": "no-such-model"}, "unknown model"),
        ({"content": "hi", "model": "vectors"}, "embedding model"),
        ({"content": "hi", "model": MODEL, "system_prompt": "x" * 20_001}, "system_prompt"),
    ]
    for options, message in refusals:
        content = options.pop("content")
        with pytest.raises(HexaHubError, match=message) as refused:
            await start(app_client, alice, content, **options)
        assert refused.value.status_code == 422
    # A workspace that allows local models only refuses a cloud model before storing.
    policy = await app_client.put(
        f"/api/workspaces/{alice.workspace_id}/gateway-policy",
        headers=alice.headers,
        json={"local_only": True},
    )
    assert policy.status_code == 200, policy.text
    with pytest.raises(HexaHubError) as refused:
        await start(app_client, alice, "hi", model=MODEL)
    assert refused.value.status_code in (403, 422), refused.value.message
    assert await conversation_count(app_client) == (0, 0)


async def test_embedding_models_are_told_apart_from_chat_models(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    await add_embedding_route(app_client, alice)
    gateway = gateway_of(app_client)
    routes = gateway.router.snapshot.routes
    assert routes["vectors"].mode == "embedding"  # declared in the provider's settings
    assert routes["ada"].mode == "embedding"  # named as one
    assert routes[MODEL].mode == "chat"
    chat = service.chat_models(gateway)
    assert MODEL in chat and "vectors" not in chat and "ada" not in chat
    local_embed = gateway.runtime.settings.local_embedding_model
    if local_embed in routes:  # the shipped embedding model, when installed
        assert routes[local_embed].mode == "embedding" and local_embed not in chat

    # The API refuses an embedding model for a conversation, with a clear 422.
    refused = await app_client.post(
        "/api/conversations",
        headers=alice.headers,
        json={"workspace_id": alice.workspace_id, "model": "vectors"},
    )
    assert refused.status_code == 422, refused.text
    assert "embedding model" in refused.json()["error"]["message"]
    cid = (await new_conversation(app_client, alice))["id"]
    sent = await app_client.post(
        f"/api/conversations/{cid}/messages",
        headers=alice.headers,
        json={"content": "hi", "model": "ada"},
    )
    assert sent.status_code == 422 and "embedding model" in sent.text


def test_deployment_mode_rules(tmp_path: Path) -> None:
    def provider(kind: str, **settings: object) -> ProviderConfig:
        return ProviderConfig(name="p", kind=kind, base_url="", settings=dict(settings))

    mode = gateway_service.deployment_mode
    assert mode(provider("ollama"), "nomic-embed-text") == "embedding"
    assert mode(provider("ollama"), "llama3.1:8b") == "chat"
    assert mode(provider("ollama", embedding_models=["bge-m3"]), "bge-m3") == "embedding"
    assert mode(provider("openai"), "text-embedding-3-small") == "embedding"
    local = provider("local", models_dir=str(tmp_path))
    assert mode(local, "all-minilm-l6-v2") == "embedding"
    assert mode(local, "smollm2-135m-instruct") == "chat"
    (tmp_path / "registry.yaml").write_text(
        "models:\n  - {name: my-vectors, path: /nowhere, kind: embedding}\n"
        "  - {name: my-chat, path: /nowhere.gguf}\n"
    )
    assert mode(local, "my-vectors") == "embedding"
    assert mode(local, "my-chat") == "chat"
    folder = tmp_path / "st-model"
    folder.mkdir()
    assert mode(local, str(folder)) == "embedding"


async def test_answers_left_streaming_by_a_stop_are_marked_failed_at_start(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    cid = (await new_conversation(app_client, alice))["id"]
    runtime = gateway_of(app_client).runtime
    long_ago = utcnow() - timedelta(minutes=10)
    just_now = utcnow() - timedelta(seconds=5)
    ids = {"old": new_id(), "live": new_id(), "done": new_id()}
    async with runtime.db.sessions() as db:
        for position, (name, status, written) in enumerate(
            [
                ("old", MessageStatus.streaming, long_ago),
                ("done", MessageStatus.complete, long_ago),
                ("live", MessageStatus.streaming, just_now),
            ]
        ):
            db.add(
                Message(
                    id=ids[name],
                    conversation_id=cid,
                    position=position,
                    role="assistant",
                    content=f"partial {name}",
                    model=MODEL,
                    status=status,
                    citations=[],
                    created_at=written,
                    updated_at=written,
                )
            )
        await db.commit()

    # What the app's start runs: only the old streaming answer was cut off.
    async with runtime.db.sessions() as db:
        assert await replies.fail_interrupted(db) == 1
    async with runtime.db.sessions() as db:
        old = await db.get(Message, ids["old"])
        live = await db.get(Message, ids["live"])
        done = await db.get(Message, ids["done"])
        assert old is not None and live is not None and done is not None
        assert old.status == MessageStatus.failed
        assert old.error == "interrupted: the server stopped while answering"
        assert old.content == "partial old"
        assert live.status == MessageStatus.streaming and live.error is None
        assert done.status == MessageStatus.complete and done.error is None
        assert await replies.fail_interrupted(db) == 0

    shown = await app_client.get(f"/api/conversations/{cid}", headers=alice.headers)
    failed = next(m for m in shown.json()["messages"] if m["id"] == ids["old"])
    assert failed["status"] == "failed" and failed["content"] == "partial old"


async def test_the_app_marks_interrupted_answers_when_it_starts(
    app_client: httpx.AsyncClient, alice: Person
) -> None:
    from hexahub.app import create_app

    cid = (await new_conversation(app_client, alice))["id"]
    runtime = gateway_of(app_client).runtime
    message_id = new_id()
    long_ago = utcnow() - timedelta(minutes=5)
    async with runtime.db.sessions() as db:
        db.add(
            Message(
                id=message_id,
                conversation_id=cid,
                position=0,
                role="assistant",
                content="half an ans",
                model=MODEL,
                status=MessageStatus.streaming,
                citations=[],
                created_at=long_ago,
                updated_at=long_ago,
            )
        )
        await db.commit()
    # A second app on the same database, as after a restart.
    app = create_app(runtime.settings)
    async with app.router.lifespan_context(app):
        pass
    async with runtime.db.sessions() as db:
        message = await db.get(Message, message_id)
        assert message is not None
        assert message.status == MessageStatus.failed
        assert message.error and message.error.startswith("interrupted")
        assert message.content == "half an ans"
