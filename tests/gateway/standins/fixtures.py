"""Ready-made pytest fixtures; import the ones a test module needs:

    from tests.gateway.standins.fixtures import openai_upstream  # noqa: F401

(ruff then also flags each test parameter of that name as F811; a file-level
``# ruff: noqa: F811`` settles it. ``pytest_plugins = ["tests.gateway.standins.fixtures"]``
in the test module works too.)

Each fixture yields a running :class:`StandinServer`. One server per protocol is started
the first time a test asks for it and stopped when the test session ends; every test gets
it reset (default models and keys, no faults, empty request log), so tests stay independent
while paying the start-up once. For a second, differently configured upstream, use
``with StandinServer(create_openai_app(models=[...])) as other: ...`` in the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette

from tests.gateway.standins.anthropic_api import create_anthropic_app
from tests.gateway.standins.ollama_api import create_ollama_app
from tests.gateway.standins.openai_api import create_openai_app
from tests.gateway.standins.server import StandinServer

_servers: dict[str, StandinServer] = {}
_lock = threading.Lock()


def shared_standin(
    name: str, create_app: Callable[[], Starlette], config: pytest.Config
) -> StandinServer:
    """The process-wide server called ``name``, started on first use and reset."""
    with _lock:
        server = _servers.get(name)
        if server is None or not server.running:
            server = StandinServer(create_app()).start()
            _servers[name] = server
            config.add_cleanup(server.stop)
    server.state.reset()
    return server


@pytest.fixture
def openai_upstream(request: pytest.FixtureRequest) -> Iterator[StandinServer]:
    """OpenAI API stand-in; ``.url("/v1")`` is the base URL clients expect."""
    server = shared_standin("openai", create_openai_app, request.config)
    yield server
    server.state.reset()


@pytest.fixture
def anthropic_upstream(request: pytest.FixtureRequest) -> Iterator[StandinServer]:
    """Anthropic API stand-in; ``.base_url`` is the base URL clients expect."""
    server = shared_standin("anthropic", create_anthropic_app, request.config)
    yield server
    server.state.reset()


@pytest.fixture
def ollama_upstream(request: pytest.FixtureRequest) -> Iterator[StandinServer]:
    """Ollama API stand-in; ``.base_url`` is the host clients expect."""
    server = shared_standin("ollama", create_ollama_app, request.config)
    yield server
    server.state.reset()
