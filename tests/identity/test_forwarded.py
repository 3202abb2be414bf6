"""Who the client is, behind a reverse proxy or not: X-Forwarded-For is believed only from
HEXAHUB_FORWARDED_ALLOW_IPS, so a caller rotating the header cannot dodge the per-IP
sign-in lockout. Through a real uvicorn server on 127.0.0.1, as `hexahub serve` sets it up."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from hexahub.identity.models import AuditEvent
from hexahub.settings import Settings
from tests.support.live import live_hexahub

MAX_PER_IP = 3


async def failed_sign_in(client: httpx.AsyncClient, forwarded_for: str) -> httpx.Response:
    # A new e-mail each time, so only the per-IP count can lock anyone out.
    return await client.post(
        "/api/auth/login",
        json={"email": f"{uuid.uuid4().hex}@example.org", "password": "wrong password"},
        headers={"X-Forwarded-For": forwarded_for},
    )


async def audited_ips(settings: Settings) -> list[str]:
    engine = create_async_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(AuditEvent.ip)
                .where(AuditEvent.action == "auth.login")
                .order_by(AuditEvent.created_at)
            )
            return [ip for (ip,) in rows]
    finally:
        await engine.dispose()


def with_lockout(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={"login_max_failures_per_ip": MAX_PER_IP, **overrides})


async def test_rotating_x_forwarded_for_does_not_dodge_the_ip_lockout_by_default(
    settings: Settings,
):
    assert settings.forwarded_allow_ips == []
    with live_hexahub(with_lockout(settings)) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            answers = [
                (await failed_sign_in(client, f"203.0.113.{n}")).status_code
                for n in range(MAX_PER_IP + 2)
            ]
    assert answers == [401] * MAX_PER_IP + [429, 429]
    assert set(await audited_ips(settings)) == {"127.0.0.1"}


async def test_a_listed_proxy_has_each_forwarded_client_counted_on_its_own(settings: Settings):
    trusted = with_lockout(settings, forwarded_allow_ips=["127.0.0.1"])
    with live_hexahub(trusted) as base_url:
        async with httpx.AsyncClient(base_url=base_url) as client:
            rotating = [
                (await failed_sign_in(client, f"203.0.113.{n}")).status_code
                for n in range(MAX_PER_IP + 2)
            ]
            # One forwarded client over its limit is locked out; the others are not.
            repeated = [
                (await failed_sign_in(client, "198.51.100.7")).status_code
                for _ in range(MAX_PER_IP + 1)
            ]
            other = await failed_sign_in(client, "198.51.100.8")
            # The client is the last address a trusted proxy did not add itself: what a
            # client wrote in front of it is not believed.
            spoofed = await failed_sign_in(client, "198.51.100.7, 192.0.2.50")
    assert rotating == [401] * (MAX_PER_IP + 2)
    assert repeated == [401] * MAX_PER_IP + [429]
    assert other.status_code == 401
    assert spoofed.status_code == 401
    ips = await audited_ips(settings)
    assert ips[: MAX_PER_IP + 2] == [f"203.0.113.{n}" for n in range(MAX_PER_IP + 2)]
    assert ips[-1] == "192.0.2.50" and "127.0.0.1" not in ips


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("", []),
        ("127.0.0.1", ["127.0.0.1"]),
        ("10.0.0.5, 172.16.0.0/12,::1", ["10.0.0.5", "172.16.0.0/12", "::1"]),
        ("*", ["*"]),
    ],
)
def test_forwarded_allow_ips_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, parsed: list[str]
) -> None:
    monkeypatch.setenv("HEXAHUB_FORWARDED_ALLOW_IPS", value)
    assert Settings().forwarded_allow_ips == parsed


@pytest.mark.parametrize("value", ["proxy.lan", "10.0.0.5/24", "300.1.1.1", "*,10.0.0.1"])
def test_forwarded_allow_ips_refuses_what_is_not_an_address(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HEXAHUB_FORWARDED_ALLOW_IPS", value)
    with pytest.raises(ValueError, match="HEXAHUB_FORWARDED_ALLOW_IPS"):
        Settings()
