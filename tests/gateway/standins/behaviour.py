"""The deterministic "model" behind every stand-in, independent of any wire format.

Rules (the same for all three protocols, so a test can predict any reply exactly):

* A token is a whitespace-separated word. Prompt tokens are the words of every text in the
  request (system prompt, every message's text parts, tool results); images and tool
  definitions count nothing.
* The reply to a conversation is ``"echo: <last user text>"``, with `` (saw N image(s))``
  appended when that message carries images. When the last message is a tool result the
  reply is ``"result: <tool output>"`` instead.
* Stop sequences cut the reply before the first one found (reason: stop sequence).
  A token limit then keeps the first ``max_tokens`` words (reason: length).
* With tools offered, the reply is a call of every tool named as ``call <name>`` in the last
  user text (in order), or of the tool the request forces. Arguments fill the tool schema's
  required properties: strings ``"x"`` (or the first enum value), numbers ``1``, booleans
  ``true``, arrays ``[]``, objects recursively. Such a reply's tokens are the words of the
  arguments' JSON.
* Embeddings are unit vectors derived from SHA-256 of the text, exact in float32.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "stop_sequence", "tool_calls"]


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass
class Conversation:
    """What the stand-in needs from a request, extracted by each protocol module."""

    last_user_text: str = ""
    images: int = 0
    tool_result: str | None = None
    texts: list[str] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(count_tokens(text) for text in self.texts)


@dataclass
class ToolSpec:
    name: str
    schema: dict[str, Any]


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass
class Reply:
    text: str
    finish: FinishReason
    stop_sequence: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        if self.tool_calls:
            return sum(count_tokens(call.arguments_json) for call in self.tool_calls)
        return count_tokens(self.text)


# A forced choice: a tool's name, "any" (some tool must be called) or "none".
ToolChoice = str | None


def reply_to(
    conversation: Conversation,
    *,
    tools: Sequence[ToolSpec] = (),
    tool_choice: ToolChoice = None,
    max_tokens: int | None = None,
    stop: Iterable[str] = (),
    json_schema: dict[str, Any] | None = None,
    json_mode: bool = False,
) -> Reply:
    calls = _tool_calls(conversation, tools, tool_choice)
    if calls:
        return Reply(text="", finish="tool_calls", tool_calls=calls)
    if json_schema is not None:
        full = json.dumps(fill_schema(json_schema))
    elif json_mode:
        full = json.dumps({"echo": conversation.last_user_text})
    else:
        full = _reply_text(conversation)
    return limit(full, max_tokens=max_tokens, stop=stop)


def limit(full: str, *, max_tokens: int | None, stop: Iterable[str] = ()) -> Reply:
    """Apply stop sequences, then the token limit, to a full reply text."""
    text, matched = full, None
    cut = min(((full.find(seq), seq) for seq in stop if seq and seq in full), default=None)
    if cut is not None:
        text, matched = full[: cut[0]], cut[1]
    if max_tokens is not None and count_tokens(text) > max_tokens:
        return Reply(text=" ".join(text.split()[: max(max_tokens, 0)]), finish="length")
    if matched is not None:
        return Reply(text=text, finish="stop_sequence", stop_sequence=matched)
    return Reply(text=text, finish="stop")


def _reply_text(conversation: Conversation) -> str:
    if conversation.tool_result is not None:
        return " ".join(["result:", *conversation.tool_result.split()])
    words = ["echo:", *conversation.last_user_text.split()]
    if conversation.images:
        plural = "image" if conversation.images == 1 else "images"
        words += [f"(saw {conversation.images} {plural})"]
    return " ".join(words)


def _tool_calls(
    conversation: Conversation, tools: Sequence[ToolSpec], choice: ToolChoice
) -> list[ToolCall]:
    if not tools or choice == "none":
        return []
    by_name = {tool.name: tool for tool in tools}
    if choice is not None and choice != "any":
        tool = by_name.get(choice)
        return [ToolCall(tool.name, fill_schema(tool.schema))] if tool else []
    named = []
    if conversation.tool_result is None:
        text = conversation.last_user_text
        found = []
        for tool in tools:
            match = re.search(rf"\bcall {re.escape(tool.name)}(?![\w.-])", text, re.IGNORECASE)
            if match:
                found.append((match.start(), tool))
        named = [tool for _, tool in sorted(found, key=lambda item: item[0])]
    if not named and choice == "any":
        named = [tools[0]]
    return [ToolCall(tool.name, fill_schema(tool.schema)) for tool in named]


def fill_schema(schema: Any) -> Any:
    """The smallest value valid for a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return fill_schema(schema[combinator][0])
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: fill_schema(properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x"


def stream_pieces(text: str) -> list[str]:
    """The reply as streamed: one word per event, each with its leading whitespace."""
    return re.findall(r"\s*\S+|\s+$", text)


def json_pieces(text: str, size: int = 8) -> list[str]:
    """Tool arguments as streamed: fixed-size fragments of the JSON text."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def embedding(text: str, dim: int = 16) -> list[float]:
    """A deterministic unit vector for ``text``; every component is exact in float32, so the
    float and base64 encodings carry the same numbers."""
    raw: list[float] = []
    block = 0
    while len(raw) < dim:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        raw += [int.from_bytes(digest[i : i + 4], "little") / 2**31 - 1.0 for i in range(0, 32, 4)]
        block += 1
    vector = raw[:dim]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in vector]


def float32_bytes(vector: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)
