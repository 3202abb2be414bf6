"""Server time of the home dashboard and the chat pages in a busy workspace.

A fresh SQLite database gets one workspace with `--members` people, `--conversations`
conversations (default 1,000) spread over them and over the last 14 days, each with a
question and an answer (`--messages` per conversation), a gateway usage record per
answer, and an audit event per conversation. The real app then runs in this process
(lifespan included) and each page is fetched `--runs` times over ASGI by the workspace's
owner, signed in with a browser session; the table gives the median and p95 of the
request's wall time, which is the server's time (no network, no browser).

The baseline, measured in the same run, is the workspace overview page
(`/workspaces/{id}`): one workspace row and its member count, the cheapest signed-in page.

    .venv/bin/python bench/web_pages.py [--conversations 1000] [--messages 2]
        [--members 5] [--runs 50]

Prints a Markdown table; paste it into bench/README.md with the machine and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from hexahub.app import create_app  # noqa: E402
from hexahub.chat.models import Conversation, Message  # noqa: E402
from hexahub.core import migrate  # noqa: E402
from hexahub.core.db import new_id, utcnow  # noqa: E402
from hexahub.gateway.models import UsageRecord  # noqa: E402
from hexahub.identity import service, workspaces  # noqa: E402
from hexahub.identity.models import AuditEvent, Membership  # noqa: E402
from hexahub.settings import Settings  # noqa: E402
from hexahub.web.csrf import CSRF_COOKIE  # noqa: E402

PASSWORD = "bench-password-123"


async def seed(settings: Settings, args: argparse.Namespace) -> str:
    """The workspace id; the first administrator owns it, the others are members."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        async with runtime.db.sessions() as db:
            owner = await service.create_first_admin(
                db, email="owner@example.org", password=PASSWORD
            )
            workspace = (await workspaces.workspaces_of(db, owner.id))[0][0]
            people = [owner.id]
            for n in range(1, args.members):
                user = await service.create_user(
                    db, email=f"member{n}@example.org", password=PASSWORD
                )
                db.add(Membership(workspace_id=workspace.id, user_id=user.id, role="member"))
                people.append(user.id)
            await db.commit()
            rng = random.Random(7)
            now = utcnow()
            conversations, messages, usage, events = [], [], [], []
            for n in range(args.conversations):
                when = now - timedelta(minutes=rng.randrange(14 * 24 * 60))
                user_id = people[n % len(people)]
                conversation_id = new_id()
                conversations.append(
                    {
                        "id": conversation_id,
                        "workspace_id": workspace.id,
                        "user_id": user_id,
                        "title": f"Conversation {n} about topic {rng.randrange(100)}",
                        "model": "local-chat",
                        "system_prompt": "",
                        "pinned": n % 50 == 0,
                        "use_repo_context": False,
                        "shared": n % 7 == 0,
                        "created_at": when,
                        "updated_at": when,
                    }
                )
                for position in range(args.messages):
                    answer = position % 2 == 1
                    messages.append(
                        {
                            "id": new_id(),
                            "conversation_id": conversation_id,
                            "position": position,
                            "role": "assistant" if answer else "user",
                            "content": ("An answer with some words. " * 20)
                            if answer
                            else f"Question {n}.{position}?",
                            "model": "local-chat" if answer else "",
                            "status": "complete",
                            "prompt_tokens": 40 if answer else 0,
                            "completion_tokens": 120 if answer else 0,
                            "cost_usd": 0.0,
                            "citations": [],
                            "created_at": when,
                        }
                    )
                    if answer:
                        usage.append(
                            {
                                "id": new_id(),
                                "created_at": when,
                                "workspace_id": workspace.id,
                                "user_id": user_id,
                                "endpoint": "chat",
                                "model": rng.choice(["local-chat", "smart", "fast"]),
                                "provider": "local",
                                "prompt_tokens": 40,
                                "completion_tokens": 120,
                                "cost_usd": 0.0001,
                                "latency_ms": 300.0,
                                "status": 200 if n % 40 else 502,
                            }
                        )
                events.append(
                    {
                        "id": new_id(),
                        "created_at": when,
                        "workspace_id": workspace.id,
                        "actor": "owner@example.org",
                        "action": "template.created",
                        "outcome": "ok",
                    }
                )
            for table, rows in (
                (Conversation, conversations),
                (Message, messages),
                (UsageRecord, usage),
                (AuditEvent, events),
            ):
                for start in range(0, len(rows), 500):
                    await db.execute(insert(table), rows[start : start + 500])
            await db.commit()
            return str(workspace.id)


async def measure(
    settings: Settings, workspace_id: str, runs: int
) -> list[tuple[str, list[float]]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench.test") as client:
            await client.get("/login")
            signed_in = await client.post(
                "/login",
                data={
                    "csrf_token": client.cookies[CSRF_COOKIE],
                    "email": "owner@example.org",
                    "password": PASSWORD,
                    "next": "/",
                },
            )
            assert signed_in.status_code == 303, signed_in.text
            chat = await client.get(f"/workspaces/{workspace_id}/chat")
            first = chat.text.split('id="conversation-list"', 1)[1]
            conversation_id = first.split(f"/workspaces/{workspace_id}/chat/", 1)[1][:36]
            pages = [
                ("baseline: /workspaces/{id}", f"/workspaces/{workspace_id}"),
                ("/ (dashboard)", f"/?workspace={workspace_id}"),
                ("/workspaces/{id}/chat", f"/workspaces/{workspace_id}/chat"),
                (
                    "/workspaces/{id}/chat/{conversation}",
                    f"/workspaces/{workspace_id}/chat/{conversation_id}",
                ),
                (
                    "/workspaces/{id}/chat/conversations?q=topic 42",
                    f"/workspaces/{workspace_id}/chat/conversations?q=topic%2042",
                ),
            ]
            results = []
            for label, path in pages:
                for _ in range(3):  # warm up
                    assert (await client.get(path)).status_code == 200, path
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    response = await client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, path
                results.append((label, times))
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hexahub-bench-web-"))
    url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    migrate.upgrade(url)
    settings = Settings(
        data_dir=work / "data",
        database_url=url,
        secret_key="bench-secret-key-" + "b" * 32,
        rate_limit_ip_per_minute=0,
    )
    workspace_id = asyncio.run(seed(settings, args))
    results = asyncio.run(measure(settings, workspace_id, args.runs))
    print(
        f"\n{args.conversations} conversations x {args.messages} messages, "
        f"{args.members} members, {args.runs} runs per page (SQLite, in-process ASGI)\n"
    )
    print("| page | median ms | p95 ms |")
    print("|---|---|---|")
    for label, times in results:
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        print(f"| {label} | {statistics.median(times):.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
