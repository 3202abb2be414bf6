"""A streamed answer over real HTTP: the client reads a few tokens and hangs up; the
answer is stored with the text it had, status `stopped`."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from hexahub.core.db import Database
from hexahub.identity import service
from hexahub.settings import Settings
from tests.chat.conftest import MODEL
from tests.gateway.standins.server import StandinServer
from tests.gateway.standins.state import Fault
from tests.support.live import live_hexahub

EMAIL, PASSWORD = "owner@example.org", "correct horse battery"


async def _seed(settings: Settings) -> None:
    database = Database(settings)
    try:
        async with database.sessions() as db:
            await service.create_first_admin(db, email=EMAIL, password=PASSWORD)
            await db.commit()
    finally:
        await database.dispose()


def test_hanging_up_mid_answer_keeps_what_was_written(
    settings: Settings, openai_upstream: StandinServer
):
    asyncio.run(_seed(settings))
    openai_upstream.state.inject(
        Fault(kind="stall", after_events=3, seconds=30, path="/v1/chat/completions")
    )
    with live_hexahub(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        token = client.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        created = client.post("/api/conversations", headers=headers, json={"model": MODEL})
        cid = created.json()["id"]

        events = []
        with client.stream(
            "POST",
            f"/api/conversations/{cid}/messages",
            headers=headers,
            json={"content": "one two three", "stream": True},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                if sum(e["type"] == "delta" for e in events) == 2:
                    break  # hang up while the model is silent
        assert [e.get("text") for e in events[1:]] == ["echo:", " one"]

        deadline = time.monotonic() + 15
        while True:
            messages = client.get(f"/api/conversations/{cid}", headers=headers).json()["messages"]
            if messages[-1]["status"] != "streaming" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        answer = messages[-1]
        assert answer["role"] == "assistant"
        assert answer["status"] == "stopped"
        assert answer["content"] == "echo: one"
