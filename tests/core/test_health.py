from __future__ import annotations

import httpx


async def test_healthz_and_readyz(app_client: httpx.AsyncClient) -> None:
    alive = await app_client.get("/healthz")
    assert alive.status_code == 200
    assert alive.json()["status"] == "ok"
    ready = await app_client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["ok"] is True
