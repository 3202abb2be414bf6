"""Limiter (per IP, user, API key; failed sign-ins) and RateLimitMiddleware.

Every Limiter test runs in process and on Redis, with a fake clock that the Limiter
passes to its buckets and counters, so nothing waits out real time.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hexahub.app import create_app
from hexahub.core import migrate
from hexahub.core.errors import RateLimited
from hexahub.core.shared import InProcessState, RedisState, SharedState
from hexahub.identity import service
from hexahub.identity.authz import Principal
from hexahub.identity.limits import Limiter, RateLimitMiddleware
from hexahub.identity.models import ApiKey, User
from tests.conftest import REDIS_SKIP, REDIS_URL, make_settings
from tests.identity.conftest import PASSWORD

WINDOW_START = 900 * 2_000_000.0  # the start of a 15-minute window


class FakeClock:
    def __init__(self) -> None:
        self.now = WINDOW_START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Setup:
    state: SharedState
    clock: FakeClock
    tmp_path: Path

    def limiter(self, **settings: Any) -> Limiter:
        return Limiter(self.state, make_settings(self.tmp_path, **settings), clock=self.clock)


async def delete_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["inprocess", "redis"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    if request.param == "inprocess":
        yield Setup(InProcessState(), FakeClock(), tmp_path)
        return
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = f"hexahub-test:{uuid.uuid4().hex}:"
    state = RedisState(REDIS_URL, prefix=prefix)
    try:
        yield Setup(state, FakeClock(), tmp_path)
    finally:
        await state.close()
        await delete_prefix(prefix)


def principal(user_id: str = "user-1", key_id: str | None = None) -> Principal:
    user = User(id=user_id, email=f"{user_id}@example.org")
    if key_id is None:
        return Principal(user, "token")
    key = ApiKey(id=key_id, user_id=user_id, name="k", prefix=f"hh_{key_id}", key_hash="x")
    return Principal(user, "api_key", api_key=key)


async def refused(call: Any) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await call
    return caught.value


# --- per IP, user and API key


async def test_ip_limit_refuses_past_the_rate_and_says_when_to_retry(setup: Setup) -> None:
    limiter = setup.limiter(rate_limit_ip_per_minute=3)
    for _ in range(3):
        await limiter.check_ip("10.0.0.1")
    error = await refused(limiter.check_ip("10.0.0.1"))
    assert error.status_code == 429 and error.code == "rate_limited"
    assert error.headers == {"Retry-After": "20"}
    assert "IP address" in error.message and "3 per minute" in error.message
    assert "retry in 20 s" in error.message
    await limiter.check_ip("10.0.0.2")  # another address, another bucket

    setup.clock.advance(10.5)
    error = await refused(limiter.check_ip("10.0.0.1"))
    assert error.headers == {"Retry-After": "10"}  # 9.5 s, rounded up to a whole second
    setup.clock.advance(9)
    error = await refused(limiter.check_ip("10.0.0.1"))
    assert error.headers == {"Retry-After": "1"}  # never 0
    setup.clock.advance(0.5)
    await limiter.check_ip("10.0.0.1")


async def test_a_zero_rate_turns_a_limit_off(setup: Setup) -> None:
    limiter = setup.limiter(
        rate_limit_ip_per_minute=0, rate_limit_user_per_minute=0, rate_limit_key_per_minute=0
    )
    for _ in range(50):
        await limiter.check_ip("10.0.0.1")
        await limiter.check_principal(principal())
        await limiter.check_principal(principal(key_id="key-1"))


async def test_requests_without_an_ip_are_not_limited_together(setup: Setup) -> None:
    limiter = setup.limiter(rate_limit_ip_per_minute=1)
    for _ in range(5):
        await limiter.check_ip("")


async def test_users_and_api_keys_have_their_own_limits(setup: Setup) -> None:
    limiter = setup.limiter(rate_limit_user_per_minute=2, rate_limit_key_per_minute=3)
    alice, alice_key = principal("alice"), principal("alice", key_id="key-a")
    for _ in range(2):
        await limiter.check_principal(alice)
    error = await refused(limiter.check_principal(alice))
    assert "by this user" in error.message and error.headers == {"Retry-After": "30"}

    # Her API key is limited on its own, at the key rate, and other users are untouched.
    for _ in range(3):
        await limiter.check_principal(alice_key)
    error = await refused(limiter.check_principal(alice_key))
    assert "with this API key" in error.message and error.headers == {"Retry-After": "20"}
    await limiter.check_principal(principal("bob"))
    await limiter.check_principal(principal("alice", key_id="key-b"))


# --- failed sign-ins


async def test_an_account_is_locked_after_too_many_failures(setup: Setup) -> None:
    limiter = setup.limiter(login_max_failures=3, login_lockout_minutes=15)
    setup.clock.advance(60)  # 14 minutes left in the window
    for _ in range(3):
        await limiter.check_login_allowed("alice@example.org", "10.0.0.1")
        await limiter.login_failed("alice@example.org", "10.0.0.1")

    error = await refused(limiter.check_login_allowed("alice@example.org", "10.0.0.9"))
    assert error.headers == {"Retry-After": str(14 * 60)}
    assert "failed sign-ins for this account" in error.message
    assert "retry in 14 min" in error.message
    # The same spelling in other case and with spaces is the same account.
    await refused(limiter.check_login_allowed("  Alice@Example.ORG ", "10.0.0.9"))
    # Other accounts from the same IP may still try.
    await limiter.check_login_allowed("bob@example.org", "10.0.0.1")

    setup.clock.advance(14 * 60)  # the window is over
    await limiter.check_login_allowed("alice@example.org", "10.0.0.1")


async def test_an_ip_is_locked_after_too_many_failures_across_accounts(setup: Setup) -> None:
    limiter = setup.limiter(login_max_failures=5, login_max_failures_per_ip=4)
    for n in range(4):
        await limiter.login_failed(f"user{n}@example.org", "10.0.0.1")
    error = await refused(limiter.check_login_allowed("someone@example.org", "10.0.0.1"))
    assert "from this IP address" in error.message
    assert error.headers == {"Retry-After": str(15 * 60)}
    await limiter.check_login_allowed("someone@example.org", "10.0.0.2")


async def test_a_success_resets_the_account_count_but_not_the_ip_count(setup: Setup) -> None:
    limiter = setup.limiter(login_max_failures=3, login_max_failures_per_ip=4)
    for _ in range(2):
        await limiter.login_failed("alice@example.org", "10.0.0.1")
    await limiter.login_succeeded("ALICE@example.org", "10.0.0.1")
    for _ in range(2):
        await limiter.login_failed("alice@example.org", "10.0.0.1")
    # 2 account failures since the success (under 3), but 4 from the IP in all.
    await limiter.check_login_allowed("alice@example.org", "10.0.0.2")
    error = await refused(limiter.check_login_allowed("alice@example.org", "10.0.0.1"))
    assert "from this IP address" in error.message


async def test_failure_counts_expire_with_their_window(setup: Setup) -> None:
    limiter = setup.limiter(login_lockout_minutes=1)
    await limiter.login_failed("alice@example.org", "10.0.0.1")
    if isinstance(setup.state, RedisState):
        keys = [k async for k in setup.state.client.scan_iter(match=setup.state.prefix + "*")]
        assert len(keys) == 2
        for key in keys:
            assert 0 < await setup.state.client.pttl(key) <= 65_000


async def test_stored_keys_do_not_hold_e_mail_addresses(setup: Setup) -> None:
    class Recording:
        """Passes every call to the real state, noting the keys."""

        def __init__(self, inner: SharedState) -> None:
            self.inner = inner
            self.backend = inner.backend
            self.keys: list[str] = []

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.inner, name)

            async def call(key: str, *args: Any, **kwargs: Any) -> Any:
                self.keys.append(key)
                return await method(key, *args, **kwargs)

            return call

    recording = Recording(setup.state)
    limiter = Limiter(recording, make_settings(setup.tmp_path), clock=setup.clock)
    await limiter.login_failed("Alice.Secret@Example.org", "10.0.0.1")
    await limiter.check_login_allowed("Alice.Secret@Example.org", "10.0.0.1")
    await limiter.login_succeeded("Alice.Secret@Example.org", "10.0.0.1")
    assert recording.keys
    assert not [key for key in recording.keys if "alice" in key.lower() or "@" in key]
    if isinstance(setup.state, RedisState):
        stored = [k async for k in setup.state.client.scan_iter(match=setup.state.prefix + "*")]
        assert stored and not [k for k in stored if b"alice" in k.lower() or b"@" in k]


async def test_limits_are_shared_between_limiters_on_one_redis(tmp_path: Path) -> None:
    """Two replicas, each with its own RedisState and Limiter, count together."""
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    prefix = f"hexahub-test:{uuid.uuid4().hex}:"
    states = [RedisState(REDIS_URL, prefix=prefix) for _ in range(2)]
    clock = FakeClock()
    settings = make_settings(tmp_path, rate_limit_ip_per_minute=10, login_max_failures=3)
    one, two = (Limiter(state, settings, clock=clock) for state in states)
    try:
        results = await asyncio.gather(
            *(limiter.check_ip("10.0.0.1") for limiter in (one, two) * 50),
            return_exceptions=True,
        )
        assert sum(result is None for result in results) == 10
        assert all(isinstance(r, RateLimited) for r in results if r is not None)

        await one.login_failed("alice@example.org", "10.0.0.1")
        await two.login_failed("alice@example.org", "10.0.0.2")
        await one.check_login_allowed("alice@example.org", "10.0.0.3")
        await two.login_failed("alice@example.org", "10.0.0.3")
        await refused(one.check_login_allowed("alice@example.org", "10.0.0.4"))
    finally:
        for state in states:
            await state.close()
        await delete_prefix(prefix)


# --- the middleware


def tiny_app(limiter: Limiter | None) -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(
        routes=[
            Route("/", hello),
            Route("/healthz", hello),
            Route("/metrics", hello),
            Route("/static/app.css", hello),
            Route("/staticky", hello),
        ]
    )
    app.add_middleware(RateLimitMiddleware)
    if limiter is not None:
        app.state.limiter = limiter
    return app


def client(app: Starlette, ip: str = "10.1.2.3") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_middleware_answers_429_past_the_ip_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = Limiter(
        InProcessState(), make_settings(tmp_path, rate_limit_ip_per_minute=2), clock=clock
    )
    app = tiny_app(limiter)
    async with client(app) as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/")).status_code == 200
        third = await http.get("/")
        assert third.status_code == 429
        assert third.headers["retry-after"] == "30"
        assert third.headers["content-type"] == "application/json"
        body = third.json()
        assert body["error"]["code"] == "rate_limited"
        assert "IP address" in body["error"]["message"]

        # Probes, metrics and static files are never limited.
        for path in ("/healthz", "/metrics", "/static/app.css") * 5:
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/staticky")).status_code == 429

    async with client(app, ip="10.1.2.4") as other:
        assert (await other.get("/")).status_code == 200
    clock.advance(30)
    async with client(app) as http:
        assert (await http.get("/")).status_code == 200


async def test_middleware_without_a_limiter_passes_everything() -> None:
    async with client(tiny_app(None)) as http:
        for _ in range(20):
            assert (await http.get("/")).status_code == 200


async def test_middleware_lets_requests_through_when_the_storage_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Limiter):
        async def check_ip(self, ip: str) -> None:
            raise RedisConnectionError("Connection refused")

    app = tiny_app(Broken(InProcessState(), make_settings(tmp_path)))
    async with client(app) as http:
        assert (await http.get("/")).status_code == 200
    assert "rate limit not checked" in caplog.text


# --- the real app


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """One migrated SQLite file (migrate.upgrade runs its own event loop: sync fixture)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'hexahub.db'}"
    migrate.upgrade(url)
    return url


async def test_sign_in_is_refused_after_too_many_failures(tmp_path: Path, sqlite_url: str) -> None:
    url = sqlite_url
    settings = make_settings(tmp_path, database_url=url, login_max_failures=2)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.runtime.db.sessions() as db:
            await service.create_user(db, email="alice@example.org", password=PASSWORD)
            await db.commit()
        async with client(app) as http:
            for _ in range(2):
                wrong = {"email": "alice@example.org", "password": "wrong password"}
                assert (await http.post("/api/auth/login", json=wrong)).status_code == 401
            right = {"email": "Alice@example.org", "password": PASSWORD}
            locked = await http.post("/api/auth/login", json=right)
            assert locked.status_code == 429
            assert 1 <= int(locked.headers["retry-after"]) <= 15 * 60
            assert "failed sign-ins for this account" in locked.json()["error"]["message"]
            other = {"email": "bob@example.org", "password": PASSWORD}
            assert (await http.post("/api/auth/login", json=other)).status_code == 401


async def test_rate_limit_is_shared_across_two_app_instances_on_one_redis(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Two replicas of the app (one SQLite file, one Redis) count one client together.

    Relies on create_app's wiring: `app.state.limiter = Limiter(runtime.shared, settings)`
    in the lifespan and `app.add_middleware(RateLimitMiddleware)`.
    """
    if not REDIS_URL:
        pytest.skip(REDIS_SKIP)
    settings = make_settings(
        tmp_path, database_url=sqlite_url, redis_url=REDIS_URL, rate_limit_ip_per_minute=3
    )
    apps = [create_app(settings), create_app(settings)]
    # The apps use the default key prefix: a random client address keeps runs apart.
    ip = "10." + ".".join(str(random.randrange(1, 255)) for _ in range(3))
    async with (
        apps[0].router.lifespan_context(apps[0]),
        apps[1].router.lifespan_context(apps[1]),
    ):
        for app in apps:
            assert isinstance(app.state.limiter, Limiter)
            assert app.state.runtime.shared.backend == "redis"
        clients = [client(app, ip) for app in apps]
        try:
            statuses = []
            for n in range(6):
                response = await clients[n % 2].get("/api/me")
                statuses.append(response.status_code)
                if response.status_code == 429:
                    retry_after = int(response.headers["retry-after"])
                    assert 1 <= retry_after <= 20
                    assert response.json()["error"]["code"] == "rate_limited"
            assert statuses == [401, 401, 401, 429, 429, 429]
            assert (await clients[1].get("/healthz")).status_code == 200
        finally:
            for http in clients:
                await http.aclose()
            redis = Redis.from_url(REDIS_URL)
            await redis.delete(f"hexahub:ratelimit:ip:{ip}")
            await redis.aclose()


async def test_the_ip_limit_answers_each_api_in_its_clients_shape(
    tmp_path: Path, sqlite_url: str
) -> None:
    """A refusal made before routing still reaches an SDK in the shape it parses: OpenAI's
    under /v1, Anthropic's on /v1/messages, HexaHub's elsewhere."""
    settings = make_settings(tmp_path, database_url=sqlite_url, rate_limit_ip_per_minute=1)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client(app) as http:
        assert (await http.get("/api/me")).status_code == 401  # the one request allowed
        openai_shaped = await http.post("/v1/chat/completions", json={})
        anthropic_shaped = await http.post("/v1/messages", json={})
        hexahub_shaped = await http.get("/api/me")
    for answer in (openai_shaped, anthropic_shaped, hexahub_shaped):
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["retry-after"]) >= 1
    error = openai_shaped.json()["error"]
    assert error["type"] and error["code"] == "rate_limited" and "IP address" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert anthropic_shaped.json()["type"] == "error"
    assert anthropic_shaped.json()["error"]["type"] == "rate_limit_error"
    assert hexahub_shaped.json()["error"]["code"] == "rate_limited"
