"""Small pieces every translator in this package shares: the JSON alias, one way to
serialise JSON, and minting ids in each API's style."""

from __future__ import annotations

import json
import uuid
from typing import Any

JSON = dict[str, Any]


def compact_json(value: Any) -> str:
    """JSON without spaces and with non-ASCII text kept as is.

    Tool-call arguments and SSE lines are compared byte for byte by clients and tests, so
    every translator serialises the same way.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def new_id(prefix: str) -> str:
    """An id shaped like the ones the API in question mints (`msg_`, `toolu_`, `chatcmpl-`)."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def object_or_empty(value: Any) -> JSON:
    """`value` when it is a JSON object, else an empty one: upstream payloads are read
    leniently, since a missing optional field must not turn into a crash."""
    return value if isinstance(value, dict) else {}


def objects_in(value: Any) -> list[JSON]:
    """The JSON objects in `value` when it is a list (anything else holds none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
