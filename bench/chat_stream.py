"""Chat streaming: how long after the model's first token the browser gets the first piece.

HexaHub runs as a real server (`hexahub serve`, uvloop and httptools) in a child process on
127.0.0.1 with a fresh data directory and the shipped local chat model (as
bench/local_inference.py starts it). The client signs in like a browser (the login form,
a session cookie, the CSRF field) and over the API, and for each run sends one short
message three ways, in turns, the order rotating so that drift in the machine's load is
shared:

- page: a new chat from the chat page (POST /workspaces/{ws}/chat/new asking for
  text/event-stream, as static/chat.js does): stores the conversation, the question and
  the answer's row, then streams;
- api: POST /api/conversations/{id}/messages with `stream: true` on a conversation made
  just before (not timed);
- baseline: POST /v1/chat/completions with `stream: true` and an API key, the same model.

For each it takes, on the client, the time from sending the request to the first piece of
answer text received (`client`), and on the server the model's time to first token as the
gateway measured it (`server`: for the chat, the answer's stored `ttft_ms`, counted from
the gateway call; for /v1, the usage record's `ttft_ms`, counted from the request's
start). `client - server` is what the request costs around the model: reading and
checking the request, what is stored before the model is called, and getting the first
piece to the client. The model's own first-token time inside the local worker is not
exposed over HTTP, so it is not shown separately.

    .venv/bin/python bench/chat_stream.py [--runs 20] [--context-size 512] [--threads 0]

Prints a Markdown table; paste it into bench/README.md with the machine and the commit.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.local_inference import Server, commit, machine  # noqa: E402
from hexahub.localmodels import shipped  # noqa: E402
from hexahub.localmodels.registry import resolved_threads  # noqa: E402

EMAIL, PASSWORD = "bench@example.org", "correct horse battery"  # as seed_key makes them
MODEL = "local-chat"
QUESTION = "Reply with one short sentence about the number {run}."


@dataclass
class Side:
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    # Chat only: ms to the `start` event, sent once everything before the model is stored.
    stored_ms: list[float] = field(default_factory=list)

    @property
    def gaps(self) -> list[float]:
        return [c - s for c, s in zip(self.client_ms, self.server_ms, strict=True)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * p
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def sse_data(line: str) -> dict[str, Any] | None:
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    found: dict[str, Any] = json.loads(line[len("data: ") :])
    return found


def read_answer(
    response: httpx.Response, started: float, side: Side
) -> tuple[float, dict[str, Any]]:
    """The chat's event stream: ms to the first delta, and the finished answer."""
    first: float | None = None
    final: dict[str, Any] | None = None
    for line in response.iter_lines():
        event = sse_data(line)
        if event is None:
            continue
        if event["type"] == "start":
            side.stored_ms.append((time.perf_counter() - started) * 1000)
        if event["type"] == "delta" and first is None:
            first = (time.perf_counter() - started) * 1000
        elif event["type"] in ("done", "error"):
            final = event["message"]
    if first is None or final is None or final.get("ttft_ms") is None:
        raise RuntimeError(f"the answer ended without text: {final}")
    return first, final


class Browser:
    """A signed-in browser (session cookie and CSRF token) and an API token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=300, trust_env=False)
        login = self.http.get("/login")
        csrf = self.http.cookies["hexahub_csrf"]
        signed_in = self.http.post(
            "/login",
            data={"csrf_token": csrf, "email": EMAIL, "password": PASSWORD, "next": "/"},
        )
        assert signed_in.status_code == 303, (login.status_code, signed_in.text)
        token = self.http.post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
        self.api = {"Authorization": f"Bearer {token.json()['access_token']}"}
        self.workspace = self.new_conversation()["workspace_id"]

    def new_conversation(self) -> dict[str, Any]:
        created = self.http.post("/api/conversations", json={"model": MODEL}, headers=self.api)
        assert created.status_code == 201, created.text
        conversation: dict[str, Any] = created.json()
        return conversation

    def page_run(self, run: int, side: Side) -> tuple[float, float]:
        body = {
            "csrf_token": self.http.cookies["hexahub_csrf"],
            "content": QUESTION.format(run=run),
            "model": MODEL,
        }
        headers = {"Accept": "text/event-stream"}
        started = time.perf_counter()
        with self.http.stream(
            "POST", f"/workspaces/{self.workspace}/chat/new", data=body, headers=headers
        ) as response:
            response.raise_for_status()
            first, final = read_answer(response, started, side)
        return first, float(final["ttft_ms"])

    def api_run(self, run: int, side: Side) -> tuple[float, float]:
        conversation = self.new_conversation()
        body = {"content": QUESTION.format(run=run), "stream": True}
        started = time.perf_counter()
        with self.http.stream(
            "POST",
            f"/api/conversations/{conversation['id']}/messages",
            json=body,
            headers=self.api,
        ) as response:
            response.raise_for_status()
            first, final = read_answer(response, started, side)
        return first, float(final["ttft_ms"])

    def v1_run(self, run: int) -> tuple[float, str]:
        """ms to the first text piece, and the request id its usage record is kept under."""
        request_id = f"bench-chat-stream-{run}-{time.monotonic_ns()}"
        body = {
            "model": MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": QUESTION.format(run=run)}],
        }
        headers = {**self.server.headers, "X-Request-ID": request_id}
        first: float | None = None
        started = time.perf_counter()
        with self.http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                chunk = sse_data(line)
                if chunk is None or first is not None:
                    continue
                if any((c.get("delta") or {}).get("content") for c in chunk["choices"]):
                    first = (time.perf_counter() - started) * 1000
        if first is None:
            raise RuntimeError("the /v1 stream ended without text")
        return first, request_id

    def close(self) -> None:
        self.http.close()


def usage_ttft(server: Server, request_ids: list[str], wait: float = 10.0) -> list[float]:
    """The /v1 requests' ttft_ms from their usage records (written a moment later)."""
    deadline = time.monotonic() + wait
    while True:
        with sqlite3.connect(server.data / "hexahub.db") as db:
            rows = dict(
                db.execute(
                    "SELECT request_id, ttft_ms FROM gateway_usage WHERE request_id LIKE ?",
                    ("bench-chat-stream-%",),
                ).fetchall()
            )
        if all(rows.get(r) is not None for r in request_ids) or time.monotonic() > deadline:
            return [float(rows[r]) for r in request_ids]
        time.sleep(0.2)  # the usage flusher writes every few tenths of a second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--context-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the runs")
    args = parser.parse_args()
    if not shipped.chat_available():
        sys.exit(f"the local chat model is not installed; run: {shipped.INSTALL_ALL}")
    threads = resolved_threads(args.threads)
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, commit {commit()}")
    print(
        f"# SmolLM2-135M-Instruct, n_ctx {args.context_size}, {threads} thread(s), "
        f"{args.runs} runs per path"
    )
    server = Server(args.context_size, threads)
    page, api, v1 = Side(), Side(), Side()
    v1_ids: list[str] = []
    try:
        browser = Browser(server)
        try:
            # Warm-up, not counted: loads the model and fills the server's caches.
            browser.page_run(-1, Side())
            browser.api_run(-2, Side())
            browser.v1_run(-3)
            deadline = time.monotonic() + args.time_limit
            for run in range(args.runs):
                if time.monotonic() > deadline:
                    print(f"# time limit reached after {run} runs", file=sys.stderr)
                    break
                order = ["page", "api", "v1"]
                order = order[run % 3 :] + order[: run % 3]
                for path in order:
                    if path == "page":
                        client, served = browser.page_run(run, page)
                        page.client_ms.append(client)
                        page.server_ms.append(served)
                    elif path == "api":
                        client, served = browser.api_run(run, api)
                        api.client_ms.append(client)
                        api.server_ms.append(served)
                    else:
                        client, request_id = browser.v1_run(run)
                        v1.client_ms.append(client)
                        v1_ids.append(request_id)
        finally:
            browser.close()
        v1.server_ms = usage_ttft(server, v1_ids)
        load = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        server.close()

    print(f"# load average at the end: {' '.join(load)}")
    print()
    print(
        "| path | client: first text, p50 / p95 ms | server: model's first token, "
        "p50 / p95 ms | client - server, p50 / p95 ms |"
    )
    print("|---|---|---|---|")
    for name, side in (
        ("chat page, new chat (text/event-stream)", page),
        ("chat API, message (SSE)", api),
        ("baseline: /v1/chat/completions (SSE)", v1),
    ):
        cells = [
            f"{percentile(values, 0.5):.1f} / {percentile(values, 0.95):.1f}"
            for values in (side.client_ms, side.server_ms, side.gaps)
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    print()
    for name, side in (("chat page", page), ("chat API", api)):
        print(
            f"# {name}: the `start` event (question and answer row stored, model not yet "
            f"called) after {percentile(side.stored_ms, 0.5):.1f} ms p50, "
            f"{percentile(side.stored_ms, 0.95):.1f} ms p95"
        )
    print(f"# chat page gaps (ms): {', '.join(f'{g:.1f}' for g in page.gaps)}")
    print(f"# chat API gaps (ms): {', '.join(f'{g:.1f}' for g in api.gaps)}")
    print(f"# /v1 gaps (ms): {', '.join(f'{g:.1f}' for g in v1.gaps)}")


if __name__ == "__main__":
    main()
