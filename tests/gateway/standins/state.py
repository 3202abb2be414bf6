"""What a test controls and observes on a running stand-in: its models and keys, the faults
it will inject next, and the log of every request it received.

The server runs on its own thread and event loop, so everything here is guarded by a lock
and safe to call from the test's thread.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["status", "delay", "cut", "malformed", "stream_error", "stall"]

REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})


@dataclass
class Fault:
    """One misbehaviour, applied to the next ``times`` matching requests, then dropped.

    kind:
      ``status``        answer ``status`` with the provider's error body (``message`` or the
                        provider's usual wording); 429 carries ``retry-after`` (``retry_after``,
                        default 1 second) and ``headers`` are added to the response.
      ``delay``         wait ``seconds`` before answering normally (for client timeouts).
      ``cut``           streams: send ``after_events`` events, then drop the connection
                        without the closing events; other responses: send the headers and half
                        the body, then drop the connection.
      ``malformed``     streams: event number ``after_events`` carries truncated JSON;
                        other responses: status 200 with a truncated JSON body.
      ``stream_error``  streams: after ``after_events`` events, the provider's in-stream error
                        event for ``status`` (then the stream ends); other responses: as
                        ``status``.
      ``stall``         streams: after ``after_events`` events, go silent for ``seconds``, then
                        finish; other responses: headers and half the body, silence, the rest.

    ``seconds`` also delays the start of every other kind. A delay or stall ends early when
    the client disconnects or the server is reset or stopped, so an abandoned request never
    holds anything up. ``path`` limits the fault to requests whose path equals it (e.g.
    ``"/v1/chat/completions"``); ``method`` likewise. Queue faults with ``state.inject(...)``
    or ``state.faults.append(...)``; the log entry of the request that met one shows it.
    """

    kind: FaultKind = "status"
    times: int = 1
    status: int = 500
    message: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    after_events: int = 0
    path: str | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.path is not None and self.path != path:
            return False
        return self.method is None or self.method.upper() == method.upper()


@dataclass
class RecordedRequest:
    """One request as the stand-in received it. Credentials are redacted from ``headers``;
    ``authorized`` says whether they were accepted (None: not checked, e.g. no key set)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    received_at: float
    authorized: bool | None = None
    fault: Fault | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class StandinState:
    """Run-time configuration and observations of one stand-in server."""

    def __init__(
        self,
        *,
        models: Iterable[str],
        api_keys: Iterable[str] = (),
        embedding_dim: int = 16,
    ) -> None:
        self._lock = threading.Condition()
        self._defaults = (list(models), set(api_keys), embedding_dim)
        self.models: list[str] = []
        self.api_keys: set[str] = set()
        self.embedding_dim = embedding_dim
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self._counter = 0
        self._held: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._closing = False
        self.reset()

    def reset(self) -> None:
        """Back to the configuration the server was created with; no faults, empty log, and
        any request still held by a delay or stall released."""
        self.release_pauses()
        models, keys, dim = self._defaults
        with self._lock:
            self.models = list(models)
            self.api_keys = set(keys)
            self.embedding_dim = dim
            self.faults.clear()
            self.requests.clear()
            self._counter = 0

    @property
    def api_key(self) -> str:
        """A key the server accepts (the first one configured)."""
        if not self.api_keys:
            raise LookupError("this stand-in has no API key configured (it accepts any)")
        return sorted(self.api_keys)[0]

    # faults

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first queued fault matching this request, counting one use of it."""
        with self._lock:
            for index, fault in enumerate(self.faults):
                if fault.times > 0 and fault.matches(method, path):
                    taken = copy.copy(fault)
                    fault.times -= 1
                    if fault.times <= 0:
                        del self.faults[index]
                    return taken
            return None

    # request log

    def record(
        self,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: Any,
        raw_body: bytes,
    ) -> RecordedRequest:
        redacted = {
            name.lower(): (_redact(value) if name.lower() in REDACTED_HEADERS else value)
            for name, value in headers
        }
        entry = RecordedRequest(method, path, query, redacted, body, raw_body, time.time())
        with self._lock:
            self.requests.append(entry)
            self._lock.notify_all()
        return entry

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method.upper())
            ]

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self.requests:
                raise LookupError("the stand-in has received no request")
            return self.requests[-1]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests were logged (bounded by ``timeout``)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(
                    f"stand-in received {len(self.requests)} request(s) within {timeout}s, "
                    f"expected {count}"
                )
            return list(self.requests)

    # delays in progress (they run on the server's event loop)

    @contextmanager
    def holding(self, released: asyncio.Event) -> Iterator[None]:
        entry = (asyncio.get_running_loop(), released)
        with self._lock:
            self._held.add(entry)
            if self._closing:
                released.set()
        try:
            yield
        finally:
            with self._lock:
                self._held.discard(entry)

    def release_pauses(self, *, closing: bool | None = None) -> None:
        """End every delay or stall in progress now; while ``closing`` (the server is
        stopping) new ones end at once too."""
        with self._lock:
            if closing is not None:
                self._closing = closing
            held = list(self._held)
        for loop, released in held:
            if not loop.is_closed():
                loop.call_soon_threadsafe(released.set)

    # identifiers

    def next_id(self, prefix: str) -> str:
        """Sequential ids (``msg_000001``): deterministic within a test, distinct per reply."""
        with self._lock:
            self._counter += 1
            return f"{prefix}{self._counter:06d}"


def _redact(value: str) -> str:
    scheme, _, secret = value.partition(" ")
    if secret and scheme.lower() in {"bearer", "basic"}:
        return f"{scheme} <redacted>"
    return "<redacted>"
