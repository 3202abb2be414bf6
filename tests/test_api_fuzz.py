"""Every /api and /v1 operation, fuzzed against what /openapi.json says about it.

Schemathesis draws requests from the OpenAPI document (boundary and invalid values of
every parameter and body field, then random ones), sends them with an installation
administrator's API key to the real app on SQLite, and checks every answer: never a 5xx;
status code, content type, headers and body as documented; invalid input refused,
valid input accepted; an undocumented method refused with 405 and a true `Allow`. The
/v1 model calls go to a local stand-in of the OpenAI API, so they answer fast.

Bounded so the suite stays quick: a fixed number of drawn requests per operation and a
fixed seed (the same requests every run, so a failure reproduces). Raise
HEXAHUB_TEST_FUZZ_EXAMPLES to search harder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from hexahub.app import create_app
from hexahub.core.db import Database
from hexahub.identity import keys, service
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.gateway.standins.openai_api import create_openai_app
from tests.gateway.standins.server import StandinServer
from tests.support.live import live_hexahub

FUZZ_EXAMPLES = int(os.environ.get("HEXAHUB_TEST_FUZZ_EXAMPLES", "10"))
ADMIN_EMAIL = "fuzz-admin@example.org"
ALL_SCOPES = ["read", "write", "admin", "gateway"]

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.positive_data_acceptance,
    openapi_checks.missing_required_header,
    openapi_checks.unsupported_method,
    openapi_checks.allow_header_conformance,
    openapi_checks.ignored_auth,
]

# Refusals of schema-valid requests that the document cannot state as a schema, because
# they depend on what the server holds (other records, the caller's credential, the
# clock, the disk), by operation: each with a piece of the message that names it. Any
# other refusal of a schema-valid request fails the test.
STATEFUL_REFUSALS: dict[str, tuple[str, ...]] = {
    "POST /api/auth/logout": ("API keys have no session",),
    "POST /api/repos": ("location: ",),  # must be a directory on the server, or a git URL
    "POST /api/gateway/models": ("no provider named",),
    "POST /api/workspaces/{workspace_id}/transfer-ownership": ("you already own",),
    "POST /api/conversations": ("is not a repository id", "unknown model"),
    "PATCH /api/conversations/{conversation_id}": ("is not a repository id", "unknown model"),
    "POST /api/conversations/{conversation_id}/messages": ("unknown model",),
    "PATCH /api/conversations/{conversation_id}/messages/{message_id}": ("unknown model",),
    "POST /api/conversations/{conversation_id}/regenerate": (
        "nothing to regenerate",
        "unknown model",
    ),
    "POST /v1/chat/completions": ("which is not in tools",),
    "PUT /api/workspaces/{workspace_id}/secrets/data/{path}": ("give a time in the future",),
    "PATCH /api/workspaces/{workspace_id}/secrets/data/{path}": ("give a time in the future",),
}
# Anywhere a workspace_id may be left out: the caller's only workspace is meant, and with
# several (the fuzzer creates some) the server will not guess.
ANY_OPERATION_REFUSALS = ("say which workspace",)


def _excused(case: Case, response: Any) -> bool:
    reasons = STATEFUL_REFUSALS.get(f"{case.method} {case.path}", ()) + ANY_OPERATION_REFUSALS
    return response.status_code in (400, 422) and any(r in response.text for r in reasons)


def _document() -> dict[str, Any]:
    """The document /openapi.json serves; building it starts nothing."""
    app = create_app(make_settings(Path("/nonexistent/hexahub-fuzz")))
    return app.openapi()


DOCUMENT = _document()
# Reports show bodies as sent (passwords and tokens here are made up); only the key is hidden.
CONFIG = SchemathesisConfig.from_dict(
    {
        "output": {
            "sanitization": {
                "keys-to-sanitize": ["authorization"],
                "sensitive-markers": ["authorization"],
            }
        }
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).include(path_regex=r"^/(api|v1)/")


@dataclass
class FuzzHub:
    url: str
    settings: Settings
    key: str = ""

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def mint_key(self) -> None:
        self.key = asyncio.run(_admin_key(self.settings))

    def keep_key(self, case: Case, response: Any) -> None:
        """The fuzzer may revoke the very key it is sent with (DELETE /api/keys/{id} with
        an id it read from GET /api/keys); carry on with a new one."""
        if response.status_code == 401 or case.path == "/api/keys/{key_id}":
            me = httpx.get(f"{self.url}/api/me", headers=self.headers(), timeout=10)
            if me.status_code == 401:
                self.mint_key()


async def _admin_key(settings: Settings) -> str:
    database = Database(settings)
    try:
        async with database.sessions() as db:
            admin = await service.find_user_by_email(db, ADMIN_EMAIL)
            if admin is None:
                admin = await service.create_first_admin(
                    db, email=ADMIN_EMAIL, password="fuzz-admin-password"
                )
            created = await keys.create_key(db, admin, name="fuzz", scopes=ALL_SCOPES)
            await db.commit()
            return created.secret
    finally:
        await database.dispose()


def _models_file(upstream: StandinServer) -> dict[str, Any]:
    """The built-in model names, served by the stand-in: the chat, ask and embedding
    defaults all reach it."""
    return {
        "providers": [
            {
                "name": "standin",
                "kind": "openai",
                "base_url": upstream.url("/v1"),
                "api_key": upstream.state.api_key,
                "timeout_seconds": 5,
            }
        ],
        "models": [
            {
                "name": "local-chat",
                "deployments": [{"provider": "standin", "model": "gpt-4o-mini"}],
            },
            {
                "name": "local-embed",
                "deployments": [{"provider": "standin", "model": "text-embedding-3-small"}],
            },
        ],
    }


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[FuzzHub]:
    root = tmp_path_factory.mktemp("fuzz")
    database = root / "hexahub.db"
    shutil.copyfile(sqlite_template, database)
    with pytest.MonkeyPatch.context() as env, StandinServer(create_openai_app()) as upstream:
        # As tests/conftest.py's per-test isolation, for the whole module.
        for name in list(os.environ):
            if name.startswith("HEXAHUB_") and not name.startswith("HEXAHUB_TEST_"):
                env.delenv(name)
        env.chdir(root)
        models = root / "models.yaml"
        models.write_text(yaml.safe_dump(_models_file(upstream)))
        fuzz_settings = make_settings(
            root,
            database_url=f"sqlite+aiosqlite:///{database}",
            models_file=models,
            local_models_enabled=False,
            gateway_health_interval_seconds=0,
            # Hundreds of requests a minute from one key: rate limits would answer most.
            rate_limit_ip_per_minute=0,
            rate_limit_user_per_minute=0,
            rate_limit_key_per_minute=0,
        )
        hub = FuzzHub(url="", settings=fuzz_settings)
        hub.mint_key()
        with live_hexahub(fuzz_settings) as url:
            hub.url = url
            served = httpx.get(f"{url}/openapi.json", timeout=10).json()
            assert served == DOCUMENT, "the fuzzed document is not the one served"
            yield hub


def _validate(case: Case, response: Any, hub: FuzzHub, checks: list[Any], **extra: Any) -> None:
    case.validate_response(
        response,
        checks=checks,
        excluded_checks=[openapi_checks.positive_data_acceptance]
        if _excused(case, response)
        else None,
        headers=hub.headers(),
        transport_kwargs={"base_url": hub.url, "headers": hub.headers()},
        **extra,
    )


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_answers_as_documented(case: Case, fuzz_hub: FuzzHub) -> None:
    response = case.call(base_url=fuzz_hub.url, headers=fuzz_hub.headers(), timeout=30)
    fuzz_hub.keep_key(case, response)
    _validate(case, response, fuzz_hub, CHECKS)


WORKFLOW_CHECKS = [
    *CHECKS,
    openapi_checks.use_after_free,
    openapi_checks.ensure_resource_availability,
]


def test_workflows_answer_as_documented(fuzz_hub: FuzzHub) -> None:
    """Calls that feed each other: what one answers (a new workspace's id) used by the next
    (its members, its secrets, deleting it), along the links schemathesis infers from the
    document; a deleted thing must be gone and a created one there."""
    found: list[FailureGroup] = []

    class Workflows(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": fuzz_hub.url, "headers": fuzz_hub.headers(), "timeout": 30}

        def after_call(self, response: Any, case: Case) -> None:
            super().after_call(response, case)
            fuzz_hub.keep_key(case, response)

        def validate_response(self, response: Any, case: Case, *args: Any, **kwargs: Any) -> None:
            try:
                _validate(case, response, fuzz_hub, WORKFLOW_CHECKS, recorder=self.recorder)
            except FailureGroup as exc:
                found.append(exc)
                raise

    try:
        Workflows.run(
            settings=settings(
                max_examples=FUZZ_EXAMPLES * 3,
                stateful_step_count=6,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
    except Flaky:
        # Each step draws from what the server answered before, and the server's state moves
        # on, so Hypothesis can find a sequence no longer drawing as it did and stop there.
        # That ends the exploration early; only a failed check is a finding.
        if found:
            raise found[0] from None


# --- what the fuzzer found, kept as plain regression tests -----------------------------


def _post(hub: FuzzHub, path: str, body: Any) -> httpx.Response:
    return httpx.post(hub.url + path, json=body, headers=hub.headers(), timeout=30)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        # Read with .get() once the stream started: a 500 after the model was called.
        (
            "/v1/chat/completions",
            {
                "model": "local-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
                "stream_options": 5,
            },
            "stream_options",
        ),
        (
            "/v1/completions",
            {"model": "local-chat", "prompt": "hi", "stream": True, "stream_options": [None]},
            "stream_options",
        ),
        # A role that is not text was looked up in a set.
        (
            "/v1/chat/completions",
            {"model": "local-chat", "messages": [{"role": {}, "content": "hi"}]},
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "local-chat",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": [1]}]}
                ],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "local-chat",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "look"}}],
                "tool_choice": {"type": "function", "function": ["look"]},
            },
            "tool_choice",
        ),
        # Booleans passed for token ids; an empty token array the provider refuses.
        ("/v1/embeddings", {"model": "local-embed", "input": [[True]]}, "input"),
        ("/v1/embeddings", {"model": "local-embed", "input": [[]]}, "input"),
    ],
)
def test_malformed_model_calls_are_refused_with_400(
    fuzz_hub: FuzzHub, path: str, body: dict[str, Any], param: str
) -> None:
    response = _post(fuzz_hub, path, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_count_tokens_refuses_what_messages_refuses(fuzz_hub: FuzzHub) -> None:
    body = {
        "model": "local-chat",
        "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "1", "name": "x"}]}],
    }
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        response = _post(fuzz_hub, path, {**body, "max_tokens": 10})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"


def test_null_max_tokens_on_messages_is_missing(fuzz_hub: FuzzHub) -> None:
    body = {
        "model": "local-chat",
        "max_tokens": None,
        "messages": [{"role": "user", "content": "x"}],
    }
    response = _post(fuzz_hub, "/v1/messages", body)
    assert response.status_code == 400, response.text
    assert "max_tokens" in response.json()["error"]["message"]


def test_method_not_allowed_lists_every_method_of_the_path(fuzz_hub: FuzzHub) -> None:
    # GET and POST of one path are two routes; the router named only the first one's.
    response = httpx.request("PUT", f"{fuzz_hub.url}/api/workspaces", headers=fuzz_hub.headers())
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
