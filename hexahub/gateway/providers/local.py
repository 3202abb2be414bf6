"""The embedded `local` provider: models running inside this process (llama.cpp for chat
and completions, sentence-transformers for embeddings), with no network and no GPU.

This module only speaks the gateway's OpenAI-shaped dicts; loading, queueing, fairness and
the inference itself live in `hexahub.localmodels`. A deployment's `model` is a local
model name (see `hexahub.localmodels.registry.resolve`); the provider's settings hold the
options of `hexahub.localmodels.registry.LocalOptions`, filled in from HEXAHUB_LOCAL_* at
start (`hexahub.localmodels.builtin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from hexahub.gateway.providers.base import (
    JSON,
    ProviderConfig,
    UpstreamError,
    caller_var,
)
from hexahub.localmodels import builtin
from hexahub.localmodels.engines import ChatRequest, Generation
from hexahub.localmodels.errors import InvalidRequest, LocalModelError
from hexahub.localmodels.manager import LocalModels, manager
from hexahub.localmodels.registry import (
    LocalModel,
    LocalOptions,
    RegistryError,
    UnknownModel,
    local_names,
    resolve,
)
from hexahub.localmodels.shipped import MissingPackage
from hexahub.localmodels.worker import Done, Job, Token


def upstream_error(exc: LocalModelError) -> UpstreamError:
    return UpstreamError(
        exc.status,
        exc.message,
        retryable=exc.retryable,
        error_type=exc.error_type,
        retry_after=exc.retry_after,
    )


# --- OpenAI bodies to local requests ------------------------------------------------------


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        else:
            raise InvalidRequest(f"{where}: local models take text only, not {part.get('type')}")
    return "\n".join(texts)


def _messages(messages: list[JSON]) -> list[JSON]:
    converted = []
    for i, message in enumerate(messages):
        role = message.get("role")
        converted.append(
            {
                "role": "system" if role == "developer" else role,
                "content": _text(message.get("content"), f"messages[{i}].content"),
            }
        )
    return converted


def _sampling(body: JSON) -> dict[str, Any]:
    """The OpenAI sampling fields the body sets; unset ones keep ChatRequest's defaults."""
    if body.get("logprobs") or body.get("top_logprobs"):
        raise InvalidRequest("logprobs: local models do not return log probabilities")
    if body.get("logit_bias"):
        raise InvalidRequest("logit_bias: is not supported by local models")
    stop = body.get("stop")
    values: dict[str, Any] = {
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens"),
        "stop": [stop] if isinstance(stop, str) else list(stop or []),
    }
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        if body.get(name) is not None:
            values[name] = body[name]
    return values


def chat_request(body: JSON) -> ChatRequest:
    choice = body.get("tool_choice")
    if body.get("tools") and (choice == "required" or isinstance(choice, dict)):
        raise InvalidRequest(
            "tool_choice: local models answer in text and do not make tool calls; "
            "use a model on another provider for tools"
        )
    tools = body.get("tools") if choice != "none" else None
    return ChatRequest(
        messages=_messages(body.get("messages") or []),
        response_format=body.get("response_format"),
        tools=tools or None,
        **_sampling(body),
    )


def completion_request(body: JSON) -> ChatRequest:
    if body.get("suffix"):
        raise InvalidRequest("suffix: is not supported by local models")
    if body.get("echo"):
        raise InvalidRequest("echo: is not supported by local models")
    prompt = body.get("prompt")
    text = prompt[0] if isinstance(prompt, list) else prompt
    return ChatRequest(prompt=str(text or ""), **_sampling(body))


def _usage(generation: Generation) -> JSON:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


def _finish(generation: Generation) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


class LocalProvider:
    def __init__(self, config: ProviderConfig, models: LocalModels | None = None) -> None:
        self.config = config
        self.models = models or manager()
        self._jobs: set[Job] = set()
        fallback = builtin.default_options()
        # A provider made through the API may carry bad settings: its requests say so,
        # rather than the whole gateway failing to load its providers.
        self._broken: str | None = None
        try:
            self.options = LocalOptions.from_settings(config.settings, fallback)
        except RegistryError as exc:
            self.options, self._broken = fallback, f"provider {config.name}: {exc}"

    # --- plumbing ------------------------------------------------------------------------
    def _model(self, name: str, kind: str) -> LocalModel:
        if self._broken is not None:
            raise UpstreamError(503, self._broken, retryable=False, error_type="api_error")
        try:
            model = resolve(name, self.options)
        except UnknownModel as exc:
            raise UpstreamError(
                404, str(exc), retryable=False, error_type="not_found_error"
            ) from exc
        except MissingPackage as exc:
            raise UpstreamError(
                503, str(exc), retryable=True, error_type="model_unavailable"
            ) from exc
        except RegistryError as exc:
            raise UpstreamError(503, str(exc), retryable=False, error_type="api_error") from exc
        if model.kind != kind:
            other = "an embedding" if model.kind == "embedding" else "a chat"
            raise UpstreamError(
                400,
                f"{name!r} is {other} model; it cannot serve "
                f"{'embeddings' if kind == 'embedding' else 'chat or completions'}",
                retryable=False,
                error_type="invalid_request_error",
            )
        return model

    def _submit(self, model: LocalModel, job: Job) -> Job:
        try:
            self.models.submit(model, self.options, job)
        except LocalModelError as exc:
            raise upstream_error(exc) from exc
        self._jobs.add(job)
        return job

    def _timed_out(self, model: LocalModel) -> UpstreamError:
        # Not retryable: trying the same busy machine again would only double the wait.
        return UpstreamError(
            504,
            f"local model {model.name!r} took longer than {self.config.timeout_seconds:g} s "
            "(the provider's timeout_seconds; waiting in its queue and loading count)",
            retryable=False,
            error_type="timeout",
        )

    async def _generate(self, model: LocalModel, request: ChatRequest) -> Generation:
        job = self._submit(model, Job(caller_var.get(), chat=request))
        try:
            done = await job.result(self.config.timeout_seconds)
        except LocalModelError as exc:
            raise upstream_error(exc) from exc
        except TimeoutError as exc:
            raise self._timed_out(model) from exc
        finally:
            self._jobs.discard(job)
        assert done.generation is not None
        return done.generation

    async def _stream(
        self, model: LocalModel, request: ChatRequest
    ) -> AsyncGenerator[Token | Done, None]:
        """Tokens and then Done; errors before the first event reach the router (which may
        retry or fall back). Closing this iterator early cancels the generation."""
        job = self._submit(model, Job(caller_var.get(), chat=request, stream=True))
        events = job.stream_events(first_timeout=self.config.timeout_seconds)
        try:
            async for event in events:
                if isinstance(event, Token | Done):
                    yield event
        except LocalModelError as exc:
            raise upstream_error(exc) from exc
        except TimeoutError as exc:
            raise self._timed_out(model) from exc
        finally:
            await events.aclose()
            self._jobs.discard(job)

    # --- the ModelProvider protocol ------------------------------------------------------
    async def chat(self, body: JSON, upstream_model: str) -> JSON:
        model = self._model(upstream_model, "chat")
        generation = await self._generate(model, self._parse(chat_request, body))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": upstream_model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": generation.text},
                    "logprobs": None,
                    "finish_reason": _finish(generation),
                }
            ],
            "usage": _usage(generation),
        }

    async def chat_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        model = self._model(upstream_model, "chat")
        request = self._parse(chat_request, body)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(delta: JSON, finish: str | None = None) -> JSON:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": upstream_model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        started = False
        # aclosing: a client that goes away stops the generation now, not at garbage collection.
        async with contextlib.aclosing(self._stream(model, request)) as events:
            async for event in events:
                if not started:
                    # Only once the model answered: a failure before this can still fall back.
                    started = True
                    yield chunk({"role": "assistant", "content": ""})
                if isinstance(event, Token):
                    yield chunk({"content": event.text})
                    continue
                generation = event.generation
                assert generation is not None
                yield chunk({}, _finish(generation))
                yield {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": upstream_model,
                    "choices": [],
                    "usage": _usage(generation),
                }

    async def completions(self, body: JSON, upstream_model: str) -> JSON:
        model = self._model(upstream_model, "chat")
        generation = await self._generate(model, self._parse(completion_request, body))
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": upstream_model,
            "choices": [
                {
                    "index": 0,
                    "text": generation.text,
                    "logprobs": None,
                    "finish_reason": _finish(generation),
                }
            ],
            "usage": _usage(generation),
        }

    async def completions_stream(self, body: JSON, upstream_model: str) -> AsyncIterator[JSON]:
        model = self._model(upstream_model, "chat")
        request = self._parse(completion_request, body)
        ident, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(text: str, finish: str | None = None) -> JSON:
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": upstream_model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            }

        async with contextlib.aclosing(self._stream(model, request)) as events:
            async for event in events:
                if isinstance(event, Token):
                    yield chunk(event.text)
                    continue
                generation = event.generation
                assert generation is not None
                yield chunk("", _finish(generation))
                yield {**chunk(""), "choices": [], "usage": _usage(generation)}

    async def embeddings(self, body: JSON, upstream_model: str) -> JSON:
        model = self._model(upstream_model, "embedding")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        if not texts or not all(isinstance(t, str) for t in texts):
            raise UpstreamError(
                400,
                "input: local embedding models take text (a string or a list of strings), "
                "not token arrays",
                retryable=False,
                error_type="invalid_request_error",
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise UpstreamError(
                400,
                'encoding_format: must be "float" or "base64"',
                retryable=False,
                error_type="invalid_request_error",
            )
        job = self._submit(model, Job(caller_var.get(), texts=texts, encoding=encoding))
        try:
            done = await job.result(self.config.timeout_seconds)
        except LocalModelError as exc:
            raise upstream_error(exc) from exc
        except TimeoutError as exc:
            raise self._timed_out(model) from exc
        finally:
            self._jobs.discard(job)
        vectors = done.vectors or []
        wanted = body.get("dimensions")
        if wanted is not None and vectors and wanted != done.dimensions:
            raise UpstreamError(
                400,
                f"dimensions: {upstream_model!r} makes {done.dimensions}-dimensional vectors "
                "and cannot shorten them",
                retryable=False,
                error_type="invalid_request_error",
            )
        return {
            "object": "list",
            "model": upstream_model,
            "data": [
                {"object": "embedding", "index": i, "embedding": vector}
                for i, vector in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": done.tokens, "total_tokens": done.tokens},
        }

    async def list_models(self) -> list[str]:
        """The names this provider can serve; loads nothing (used by health checks)."""
        return await asyncio.to_thread(local_names, self.options)

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        self._jobs.clear()

    # --- helpers -------------------------------------------------------------------------
    @staticmethod
    def _parse(parse: Any, body: JSON) -> ChatRequest:
        try:
            request: ChatRequest = parse(body)
        except LocalModelError as exc:
            raise upstream_error(exc) from exc
        return request


def make(config: ProviderConfig) -> LocalProvider:
    return LocalProvider(config)
