"""Local stand-ins for the cloud and local model APIs HexaHub's gateway talks to, written
from the providers' public API references and checked against their official SDKs
(tests/gateway/test_standins.py).

* ``openai_api.create_openai_app``, ``anthropic_api.create_anthropic_app``,
  ``ollama_api.create_ollama_app``: Starlette apps, one per wire protocol.
* ``server.StandinServer``: runs one with uvicorn on 127.0.0.1 in a background thread.
* ``fixtures``: ``openai_upstream``, ``anthropic_upstream``, ``ollama_upstream``.
* ``state``: ``server.state`` is a ``StandinState``: ``models``, ``api_keys``,
  ``embedding_dim``, ``faults`` (``Fault``), ``requests`` (``RecordedRequest``).
* ``behaviour``: the deterministic replies, token counts and embeddings.
"""

from tests.gateway.standins.state import Fault, RecordedRequest, StandinState

__all__ = ["Fault", "RecordedRequest", "StandinState"]
