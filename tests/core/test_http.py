"""The middleware and error handlers, through the real app (lifespan included).

A few test-only routes are added to the app before its first request; they sit under
/test/ and exist only in these tests.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from hexahub.app import create_app
from hexahub.core.errors import Conflict
from hexahub.core.logging import configure_logging
from hexahub.settings import Settings
from tests.conftest import make_settings

BODY_LIMIT = 4096
SECRET_DETAIL = "secret-internal-detail-7f3a"
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
route_log = logging.getLogger("hexahub.test_http")


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The conftest settings, with a small body limit."""
    return make_settings(tmp_path, database_url=database_url, max_request_body_bytes=BODY_LIMIT)


class Item(BaseModel):
    name: str
    quantity: int


def _add_test_routes(app: FastAPI) -> None:
    @app.post("/test/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return item.model_dump()

    @app.get("/test/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, Any]:
        route_log.info("reading item %d", item_id)
        return {"id": item_id}

    @app.get("/test/crash")
    async def crash() -> None:
        raise RuntimeError(SECRET_DETAIL)

    @app.get("/test/conflict")
    async def conflict() -> None:
        raise Conflict("that item already exists")


@pytest.fixture
def client(app_client: httpx.AsyncClient) -> httpx.AsyncClient:
    _add_test_routes(app_client.app)  # type: ignore[attr-defined]
    return app_client


def _error(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    error: dict[str, Any] = body["error"]
    return error


# --- error shapes --------------------------------------------------------------------------


async def test_unknown_route_is_a_json_404_naming_the_path(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/page")
    assert response.status_code == 404
    error = _error(response)
    assert error["code"] == "not_found"
    assert "/no/such/page" in error["message"]


async def test_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    error = _error(response)
    assert error["code"] == "method_not_allowed"
    assert "DELETE" in error["message"] and "/healthz" in error["message"]
    assert "GET" in response.headers["allow"]


async def test_body_over_the_limit_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/test/items", content=b"x" * (BODY_LIMIT + 1), headers={"content-type": "application/json"}
    )
    assert response.request.headers["content-length"] == str(BODY_LIMIT + 1)
    assert response.status_code == 413
    error = _error(response)
    assert error["code"] == "payload_too_large"
    assert str(BODY_LIMIT) in error["message"]


async def _chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b" " * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/test/items",
        content=_chunks(BODY_LIMIT * 3),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    error = _error(response)
    assert error["code"] == "payload_too_large"
    assert str(BODY_LIMIT) in error["message"]


async def test_chunked_body_under_the_limit_is_read_whole(client: httpx.AsyncClient) -> None:
    body = json.dumps({"name": "n" * (BODY_LIMIT - 100), "quantity": 2}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 700):
            yield body[start : start + 700]

    response = await client.post(
        "/test/items", content=pieces(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["quantity"] == 2


async def test_invalid_json_is_400_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/test/items", content=b'{"name": "a", ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_json"
    assert "not valid JSON" in error["message"]


async def test_validation_error_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/test/items", json={"name": "a", "quantity": "many"})
    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "validation_error"
    assert "body.quantity" in error["message"]
    assert [problem["field"] for problem in error["details"]] == ["body.quantity"]

    missing = _error(await client.post("/test/items", json={"quantity": 1}))
    assert "body.name" in missing["message"]


async def test_hexahub_errors_keep_their_status_and_code(client: httpx.AsyncClient) -> None:
    response = await client.get("/test/conflict")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "conflict", "message": "that item already exists"}}


async def test_unexpected_exception_is_a_generic_500(client: httpx.AsyncClient) -> None:
    response = await client.get("/test/crash")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "internal_error"
    assert "request's id" in error["message"]
    for leak in (SECRET_DETAIL, "Traceback", "RuntimeError", "test_http.py"):
        assert leak not in response.text
    assert GENERATED_ID.match(response.headers["x-request-id"])


# --- request ids and headers ---------------------------------------------------------------


async def test_every_response_carries_a_request_id_and_security_headers(
    client: httpx.AsyncClient,
) -> None:
    responses = [
        await client.get("/healthz"),
        await client.get("/no/such/page"),
        await client.delete("/healthz"),
        await client.post("/test/items", json={"name": "a"}),
        await client.post("/test/items", content=b"x" * (BODY_LIMIT + 1)),
        await client.post("/test/items", content=_chunks(BODY_LIMIT * 2)),
        await client.get("/test/crash"),
        await client.get("/static/does-not-exist.css"),
    ]
    assert [r.status_code for r in responses] == [200, 404, 405, 422, 413, 413, 500, 404]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(request_id and GENERATED_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)
    for response in responses:
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "strict-transport-security" not in headers  # plain http here


async def test_safe_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    for request_id in ("abc-123", "trace.id:42_x", "A" * 128):
        response = await client.get("/healthz", headers={"x-request-id": request_id})
        assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize("unsafe", ["has space", "<script>", "A" * 129, "semi;colon", ""])
async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient, unsafe: str) -> None:
    response = await client.get("/healthz", headers={"x-request-id": unsafe})
    assert response.headers["x-request-id"] != unsafe
    assert GENERATED_ID.match(response.headers["x-request-id"])


async def test_hsts_is_sent_behind_https(tmp_path: Path, database_url: str) -> None:
    app = create_app(
        make_settings(tmp_path, database_url=database_url, public_url="https://hub.example.org")
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://hub.test") as c:
            response = await c.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")


# --- metrics -------------------------------------------------------------------------------


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _requests(text: str, route: str, status: str, method: str = "GET") -> float:
    key = (("method", method), ("route", route), ("status", status))
    return _samples(text, "hexahub_http_requests_total").get(key, 0.0)


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    for item_id in (1, 2, 3):
        assert (await client.get(f"/test/items/{item_id}")).status_code == 200
    await client.get("/test/crash")
    await client.get("/no/such/page/12345")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    template = "/test/items/{item_id}"
    assert _requests(after, template, "200") - _requests(before, template, "200") == 3
    assert _requests(after, "/test/crash", "500") - _requests(before, "/test/crash", "500") == 1
    assert _requests(after, "<unmatched>", "404") - _requests(before, "<unmatched>", "404") == 1
    routes = {dict(labels)["route"] for labels in _samples(after, "hexahub_http_requests_total")}
    assert not [route for route in routes if "12345" in route or "/test/items/1" in route]
    durations = _samples(after, "hexahub_http_request_duration_seconds_count")
    assert durations[(("method", "GET"), ("route", template))] >= 3
    assert "process_cpu_seconds_total" in after
    assert "process_resident_memory_bytes" in after


async def test_metrics_can_be_turned_off(tmp_path: Path, database_url: str) -> None:
    app = create_app(make_settings(tmp_path, database_url=database_url, metrics_enabled=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
            response = await c.get("/metrics")
    assert response.status_code == 404
    assert "HEXAHUB_METRICS_ENABLED" in _error(response)["message"]


# --- logs ----------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo configure_logging() after the test."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "taskiq")
    saved = [
        (lg, list(lg.handlers), lg.level, lg.propagate) for lg in map(logging.getLogger, names)
    ]
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


async def test_json_logs_carry_the_request_id(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    # Configured here, not in a fixture: capsys swaps stderr between test phases.
    configure_logging("INFO", fmt="json")
    await client.get("/test/items/7", headers={"x-request-id": "log-trace-1"})
    await client.get("/test/crash", headers={"x-request-id": "log-trace-2"})

    lines = capsys.readouterr().err.splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]

    in_route = [e for e in entries if e["message"] == "reading item 7"]
    assert [e["request_id"] for e in in_route] == ["log-trace-1"]
    access = [e for e in entries if e["logger"] == "hexahub.http" and e.get("status") == 200]
    assert [e["request_id"] for e in access] == ["log-trace-1"]
    assert "/test/items/7" in access[0]["message"]
    assert isinstance(access[0]["duration_ms"], float | int)
    crash = [e for e in entries if "exception" in e]
    assert [e["request_id"] for e in crash] == ["log-trace-2"]
    assert SECRET_DETAIL in crash[0]["exception"]  # the details are in the log, not the body
    assert crash[0]["level"] == "error"
