"""HTTP mechanics shared by the three stand-ins: reading and logging a request, applying the
queued fault, and sending JSON or a stream of events, including broken ones.

A protocol module supplies a :class:`Protocol` (how its errors, events and credentials
look) and handlers that return a JSON-able ``dict``/``list`` or an :class:`EventStream`,
or raise :class:`ApiError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tests.gateway.standins.state import Fault, RecordedRequest, StandinState

JSON = dict[str, Any]


class ApiError(Exception):
    """An error the stand-in answers in its provider's shape."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or f"status {status}")
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})


class StreamCut(Exception):
    """Raised inside a response to make uvicorn drop the connection mid-body, which is how
    a network cut looks to the client (an incomplete chunked body)."""


@dataclass
class Event:
    data: str
    name: str | None = None


@dataclass
class EventStream:
    events: list[Event]
    media_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Protocol:
    """What differs between providers at the HTTP level."""

    error_response: Callable[[ApiError, StandinState], Response]
    error_event: Callable[[ApiError], Event]
    encode_event: Callable[[Event], bytes]
    # Returns None when the credentials are fine (or not checked) and records the verdict.
    check_auth: Callable[[Request, StandinState, RecordedRequest], ApiError | None]
    response_headers: Callable[[StandinState], dict[str, str]] = lambda state: {}


Handler = Callable[[Request, Any], Awaitable["JSON | list[Any] | EventStream | Response"]]


def endpoint(
    protocol: Protocol, handler: Handler, *, authenticate: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        state: StandinState = request.app.state.standin
        raw = await request.body()
        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = f"the request body is not valid JSON: {exc}"
        entry = state.record(
            request.method,
            request.url.path,
            request.url.query,
            request.headers.items(),
            body,
            raw,
        )
        fault = state.take_fault(request.method, request.url.path)
        entry.fault = fault
        extra = protocol.response_headers(state)
        try:
            if fault is not None and fault.seconds > 0 and fault.kind != "stall":
                await pause(request.receive, fault.seconds, state)
            if fault is not None and fault.kind == "status":
                raise fault_error(fault)
            if authenticate:
                problem = protocol.check_auth(request, state, entry)
                if problem is not None:
                    raise problem
            if body_error is not None:
                raise ApiError(400, body_error, code="invalid_json")
            result = await handler(request, body)
            if (
                fault is not None
                and fault.kind == "stream_error"
                and not isinstance(result, EventStream)
            ):
                raise fault_error(fault)
        except ApiError as error:
            response = protocol.error_response(error, state)
            response.headers.update(error.headers)
            _add_missing(response, extra)
            return response
        if isinstance(result, Response):
            _add_missing(result, extra)
            return result
        if isinstance(result, EventStream):
            return FaultyStream(result, protocol, fault, {**extra, **result.headers}, state)
        return FaultyJSON(result, fault, extra, state)

    return run


def _add_missing(response: Response, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        response.headers.setdefault(name, value)


def fault_error(fault: Fault) -> ApiError:
    headers = dict(fault.headers)
    retry_after = fault.retry_after
    if retry_after is None and fault.status == 429:
        retry_after = 1
    if retry_after is not None:
        headers.setdefault("retry-after", f"{retry_after:g}")
    return ApiError(fault.status, fault.message, headers=headers)


async def pause(receive: Receive, seconds: float, state: StandinState) -> None:
    """Wait ``seconds``, or less if the client goes away or the server is stopped or reset,
    so that an abandoned delay never holds anything up."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    released = asyncio.Event()
    with state.holding(released):
        waits = [asyncio.ensure_future(disconnected()), asyncio.ensure_future(released.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)


def json_bytes(content: Any) -> bytes:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


class FaultyJSON(Response):
    """A JSON body, possibly truncated, stalled or cut according to the fault."""

    media_type = "application/json"

    def __init__(
        self, content: Any, fault: Fault | None, headers: dict[str, str], state: StandinState
    ) -> None:
        super().__init__(json_bytes(content), 200, headers)
        self.fault = fault
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = self.fault
        kind = fault.kind if fault is not None else None
        body = bytes(self.body)
        half = body[: len(body) // 2]
        if kind == "malformed":
            body = half
            self.headers["content-length"] = str(len(body))
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if fault is None or kind not in ("cut", "stall"):
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.body", "body": half, "more_body": True})
        if kind == "cut":
            raise StreamCut("fault: connection cut mid-body")
        await pause(receive, fault.seconds, self.state)
        await send({"type": "http.response.body", "body": body[len(half) :]})


class FaultyStream(Response):
    """A stream of events (SSE or NDJSON), possibly broken according to the fault."""

    def __init__(
        self,
        stream: EventStream,
        protocol: Protocol,
        fault: Fault | None,
        headers: dict[str, str],
        state: StandinState,
    ) -> None:
        super().__init__(
            None, 200, {"cache-control": "no-cache", **headers}, media_type=stream.media_type
        )
        # Chunked transfer: a cut then shows as an incomplete body, not a short one.
        del self.headers["content-length"]
        self.events = stream.events
        self.protocol = protocol
        self.fault = fault
        self.state = state

    def _frames(self) -> Sequence[bytes | None]:
        """Encoded frames; None marks where a stall happens."""
        encode = self.protocol.encode_event
        frames: list[bytes | None] = [encode(event) for event in self.events]
        fault = self.fault
        if fault is None or fault.kind == "delay":
            return frames
        at = min(max(fault.after_events, 0), len(self.events))
        if fault.kind == "malformed" and at < len(self.events):
            broken = self.events[at]
            frames[at] = encode(Event(broken.data[: len(broken.data) // 2], broken.name))
        elif fault.kind == "stall":
            frames.insert(at, None)
        elif fault.kind == "stream_error":
            frames[at:] = [encode(self.protocol.error_event(fault_error(fault)))]
        return frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = self.fault
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        for index, frame in enumerate(self._frames()):
            if fault is not None and fault.kind == "cut" and index >= fault.after_events:
                raise StreamCut(f"fault: stream cut after {fault.after_events} event(s)")
            if frame is None:
                assert fault is not None
                await pause(receive, fault.seconds, self.state)
                continue
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if fault is not None and fault.kind == "cut":
            raise StreamCut("fault: stream cut before its end")
        await send({"type": "http.response.body", "body": b""})


class _HideStreamCuts(logging.Filter):
    """Keeps uvicorn's 'Exception in ASGI application' traceback for deliberate cuts out of
    the test output; real exceptions still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, BaseExceptionGroup):
            _, rest = error.split(StreamCut)
            return rest is not None
        return not isinstance(error, StreamCut)


def hide_stream_cuts_from_logs() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideStreamCuts) for f in logger.filters):
        logger.addFilter(_HideStreamCuts())
