"""create_app(): middleware and each domain's router, nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hexahub import __version__
from hexahub.chat import api as chat_api
from hexahub.chat import replies as chat_replies
from hexahub.context import api as context_api
from hexahub.context import inject as context_inject
from hexahub.core.errors import install_error_handlers, register_error_shape
from hexahub.core.health import router as health_router
from hexahub.core.http import RequestContextMiddleware
from hexahub.core.openapi import install_openapi
from hexahub.core.runtime import Runtime
from hexahub.gateway import admin_api as gateway_admin_api
from hexahub.gateway import api as gateway_api
from hexahub.gateway import errors as gateway_errors
from hexahub.gateway.engine import Gateway
from hexahub.identity import api as identity_api
from hexahub.identity import oidc
from hexahub.identity.keys import KeyUsage
from hexahub.identity.limits import EXEMPT_PATHS, Limiter, RateLimitMiddleware
from hexahub.settings import Settings, get_settings
from hexahub.vault import api as vault_api
from hexahub.web import chat_pages, dashboard, gateway_pages, pages, repo_pages, vault_pages

log = logging.getLogger("hexahub.app")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(settings)
        app.state.runtime = runtime
        app.state.limiter = Limiter(runtime.shared, settings)
        app.state.key_usage = KeyUsage(runtime.db.sessions)
        app.state.key_usage.start()
        # Before the queue: background tasks (indexing) use this gateway too.
        app.state.gateway = await Gateway.start(runtime)
        runtime.services["gateway"] = app.state.gateway
        context_inject.register(app.state.gateway)  # workspace context on /v1 requests
        async with runtime.db.sessions() as db:
            await chat_replies.fail_interrupted(db)
        # API replicas in broker mode only hand work to `hexahub worker` processes.
        await runtime.start_queue(consume=settings.queue_backend == "inprocess")
        await pages.announce_setup_link(runtime)
        try:
            yield
        finally:
            await app.state.gateway.stop()
            await app.state.key_usage.stop()
            await runtime.close()

    app = FastAPI(
        title="HexaHub",
        version=__version__,
        description="Self-hosted AI workspace and homelab control plane.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Errors answered before routing (the per-IP limit) in the shape each API's clients read.
    register_error_shape(app, "/v1", gateway_errors.openai_error)
    register_error_shape(app, "/v1/messages", gateway_errors.anthropic_error)
    install_openapi(app, unlimited_paths=EXEMPT_PATHS)
    # Inside CORS, so a 429 still carries the CORS headers a browser needs to read it.
    app.add_middleware(RateLimitMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        hsts=settings.behind_tls,
    )
    # The model APIs first: route matching is linear and they carry the most traffic.
    app.include_router(gateway_api.openai_router)
    app.include_router(gateway_api.anthropic_router)
    app.include_router(health_router)
    app.include_router(identity_api.router)
    app.include_router(oidc.router)
    app.include_router(vault_api.router)
    app.include_router(context_api.router)
    app.include_router(chat_api.router)
    app.include_router(gateway_admin_api.router)
    pages.mount(app)
    dashboard.register_pages(app)
    chat_pages.register_pages(app)
    vault_pages.register_pages(app)
    gateway_pages.register_pages(app)
    repo_pages.register_pages(app)
    return app
