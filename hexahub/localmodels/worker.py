"""One thread per loaded model, and the jobs it runs for asyncio callers.

llama.cpp already spreads one request over the cores, so a model gets exactly one worker
thread: requests to it wait in its FairQueue and run one at a time. The thread loads the
model on its first job (lazily) and unloads it when no job came for the idle time.

A job talks back to its caller's event loop with `loop.call_soon_threadsafe` into an
asyncio.Queue: one event per token when streaming, then `Done` or `Failed`. Cancelling a
job (the client went away) takes it out of the queue if it is still waiting, or sets the
flag the generation loop checks before each token, so the worker is free for the next
request within one token.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from hexahub.localmodels import metrics
from hexahub.localmodels.engines import (
    ChatEngine,
    ChatRequest,
    EmbeddingEngine,
    Generation,
    load_engine,
    process_rss_bytes,
)
from hexahub.localmodels.errors import (
    Busy,
    CallerBusy,
    InferenceFailed,
    LocalModelError,
    ModelUnavailable,
)
from hexahub.localmodels.registry import LocalModel
from hexahub.localmodels.scheduler import FairQueue, QueueFull
from hexahub.localmodels.shipped import MissingPackage

log = logging.getLogger("hexahub.localmodels")

# Loads one at a time, so that the RSS growth measured around a load belongs to that model.
_LOAD_LOCK = threading.Lock()


@dataclass
class Token:
    text: str


@dataclass
class Done:
    generation: Generation | None = None
    # Embeddings, one per input: lists of floats, or base64 of little-endian float32.
    vectors: list[Any] | None = None
    dimensions: int = 0
    tokens: int = 0


@dataclass
class Failed:
    error: LocalModelError


Event = Token | Done | Failed


class Job:
    """One request for a worker: a chat generation or a list of texts to embed."""

    def __init__(
        self,
        caller: str,
        *,
        chat: ChatRequest | None = None,
        texts: list[str] | None = None,
        encoding: str = "float",
        stream: bool = False,
    ) -> None:
        self.caller = caller
        self.chat = chat
        self.texts = texts
        self.encoding = encoding
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.finished = False
        self.worker: ModelWorker | None = None
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop this job: out of the queue if waiting, else at the next token."""
        if self.finished or self._cancelled.is_set():
            return
        self._cancelled.set()
        if self.worker is not None:
            self.worker.discard(self)

    # --- called on the worker thread ------------------------------------------------------
    def post(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the caller's event loop is closed: nobody is listening
            self._cancelled.set()

    # --- awaited on the caller's event loop -----------------------------------------------
    async def stream_events(
        self, first_timeout: float | None = None
    ) -> AsyncGenerator[Event, None]:
        """Tokens, then one Done; a Failed is raised. Leaving early cancels the job."""
        try:
            waited = False
            while True:
                if not waited and first_timeout is not None:
                    event = await asyncio.wait_for(self.events.get(), first_timeout)
                else:
                    event = await self.events.get()
                waited = True
                if isinstance(event, Failed):
                    self.finished = True
                    raise event.error
                if isinstance(event, Done):
                    self.finished = True
                yield event
                if self.finished:
                    return
        finally:
            self.cancel()

    async def result(self, limit: float | None = None) -> Done:
        """Wait for the job to end, at most `limit` seconds; cancelling the wait (or running
        out of time) cancels the job."""
        try:
            async with asyncio.timeout(limit):
                while True:
                    event = await self.events.get()
                    if isinstance(event, Failed):
                        self.finished = True
                        raise event.error
                    if isinstance(event, Done):
                        self.finished = True
                        return event
        finally:
            self.cancel()


class ModelWorker:
    def __init__(
        self,
        model: LocalModel,
        *,
        queue_size: int,
        idle_unload_seconds: float,
        embedding_batch_size: int,
        retire: Callable[[ModelWorker], bool],
        remember_failure: Callable[[ModelWorker, LocalModelError], None],
    ) -> None:
        self.model = model
        self.queue: FairQueue[Job] = FairQueue(queue_size)
        self.idle_unload_seconds = idle_unload_seconds
        self.embedding_batch_size = embedding_batch_size
        self.state = "loading"
        self.loaded_at: float | None = None
        self.last_used = time.monotonic()
        self.memory_bytes = 0
        self.rss_growth_bytes = 0
        self.current: Job | None = None
        self._retire = retire
        self._remember_failure = remember_failure
        self._stopping = False
        self._engine: ChatEngine | EmbeddingEngine | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"hexahub-model-{model.name}", daemon=True
        )
        self.thread.start()

    # --- called from asyncio (under the manager's lock) -----------------------------------
    def submit(self, job: Job) -> None:
        job.worker = self
        try:
            self.queue.put(job.caller, job)
        except QueueFull as exc:
            metrics.REJECTED.labels(self.model.name).inc()
            kind = CallerBusy if exc.per_caller else Busy
            raise kind(
                f"local model {self.model.name!r} is busy: {exc}; try again shortly",
                retry_after=1.0,
            ) from exc
        metrics.QUEUE_DEPTH.labels(self.model.name).set(len(self.queue))

    def discard(self, job: Job) -> None:
        if self.queue.discard(job):
            metrics.QUEUE_DEPTH.labels(self.model.name).set(len(self.queue))

    def stop(self) -> None:
        """Unload soon: refuse new jobs, fail waiting ones, cancel the running one."""
        self._stopping = True
        for job in self.queue.close():
            job.post(Failed(ModelUnavailable("HexaHub is unloading this model; try again")))
        if self.current is not None:
            self.current.cancel()

    # --- the worker thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._engine = self._load()
        except LocalModelError as exc:
            self._fail_all(exc)
            return
        try:
            self._serve()
        finally:
            self._unload()

    def _load(self) -> ChatEngine | EmbeddingEngine:
        name = self.model.name
        started = time.perf_counter()
        try:
            with _LOAD_LOCK:
                before = process_rss_bytes()
                engine = load_engine(self.model)
                self.rss_growth_bytes = max(0, process_rss_bytes() - before)
        except MissingPackage as exc:
            metrics.LOADS.labels(name, "failed").inc()
            raise ModelUnavailable(str(exc)) from exc
        except LocalModelError:
            metrics.LOADS.labels(name, "failed").inc()
            raise
        except Exception as exc:
            metrics.LOADS.labels(name, "failed").inc()
            log.exception("loading local model %s failed", name)
            raise ModelUnavailable(f"local model {name!r} could not be loaded: {exc}") from exc
        self.memory_bytes = engine.memory_bytes()
        self.loaded_at = time.monotonic()
        self.state = "ready"
        metrics.LOADS.labels(name, "loaded").inc()
        metrics.LOADED.labels(name, self.model.kind).set(1)
        metrics.MEMORY.labels(name).set(self.memory_bytes)
        metrics.RSS_GROWTH.labels(name).set(self.rss_growth_bytes)
        log.info(
            "loaded local model %s from %s in %.2f s (about %.0f MB)",
            name,
            self.model.path,
            time.perf_counter() - started,
            self.memory_bytes / 1e6,
        )
        return engine

    def _fail_all(self, error: LocalModelError) -> None:
        """The model cannot load: every waiting job gets the error, and so will new ones."""
        self.state = "failed"
        self._remember_failure(self, error)
        for job in self.queue.close():
            job.post(Failed(error))
        metrics.QUEUE_DEPTH.labels(self.model.name).set(0)

    def _serve(self) -> None:
        idle = self.idle_unload_seconds if self.idle_unload_seconds > 0 else None
        while True:
            job = self.queue.take(idle)
            metrics.QUEUE_DEPTH.labels(self.model.name).set(len(self.queue))
            if job is None:
                if self._stopping or self._retire(self):
                    return
                continue
            if job.cancelled:
                continue
            self.current = job
            try:
                if job.texts is not None:
                    self._embed([job, *self._more_texts(len(job.texts))])
                else:
                    self._chat(job)
            finally:
                self.current = None
                self.last_used = time.monotonic()

    def _chat(self, job: Job) -> None:
        engine = self._engine
        assert isinstance(engine, ChatEngine) and job.chat is not None
        emit = (lambda text: job.post(Token(text))) if job.stream else None
        try:
            generation = engine.generate(job.chat, emit=emit, cancelled=lambda: job.cancelled)
        except LocalModelError as exc:
            metrics.REQUESTS.labels(self.model.name, "failed").inc()
            job.post(Failed(exc))
            return
        except Exception as exc:
            log.exception("local model %s failed", self.model.name)
            metrics.REQUESTS.labels(self.model.name, "failed").inc()
            job.post(Failed(InferenceFailed(f"local model {self.model.name!r} failed: {exc}")))
            return
        metrics.REQUESTS.labels(self.model.name, generation.finish_reason).inc()
        if generation.completion_tokens > 1 and generation.decode_seconds > 0:
            metrics.TOKENS_PER_SECOND.labels(self.model.name).observe(
                (generation.completion_tokens - 1) / generation.decode_seconds
            )
        metrics.TOKENS.labels(self.model.name, "prompt").inc(generation.prompt_tokens)
        metrics.TOKENS.labels(self.model.name, "completion").inc(generation.completion_tokens)
        job.post(Done(generation=generation))

    def _more_texts(self, already: int) -> list[Job]:
        """Further waiting embedding jobs to run in the same batch (fair order kept)."""
        budget = [self.embedding_batch_size - already]

        def fits(job: Job) -> bool:
            size = len(job.texts or ()) if job.texts is not None else None
            if size is None or size > budget[0]:
                return False
            budget[0] -= size
            return True

        more = self.queue.take_more(self.embedding_batch_size, fits)
        metrics.QUEUE_DEPTH.labels(self.model.name).set(len(self.queue))
        return [job for job in more if not job.cancelled]

    def _embed(self, jobs: list[Job]) -> None:
        engine = self._engine
        assert isinstance(engine, EmbeddingEngine)
        texts = [text for job in jobs for text in job.texts or ()]
        try:
            vectors = engine.embed(texts, self.embedding_batch_size)
            counts = engine.count_tokens(texts)
        except Exception as exc:
            log.exception("local model %s failed", self.model.name)
            error = InferenceFailed(f"local model {self.model.name!r} failed: {exc}")
            for job in jobs:
                job.post(Failed(error))
            metrics.REQUESTS.labels(self.model.name, "failed").inc(len(jobs))
            return
        metrics.EMBEDDING_BATCH.labels(self.model.name).observe(len(texts))
        metrics.REQUESTS.labels(self.model.name, "embedded").inc(len(jobs))
        metrics.TOKENS.labels(self.model.name, "prompt").inc(sum(counts))
        start = 0
        for job in jobs:
            size = len(job.texts or ())
            rows = vectors[start : start + size]
            # Converted here, off the event loop: a big batch is a lot of floats.
            encoded: list[Any] = (
                [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
                if job.encoding == "base64"
                else rows.tolist()
            )
            job.post(
                Done(
                    vectors=encoded,
                    dimensions=int(vectors.shape[1]),
                    tokens=sum(counts[start : start + size]),
                )
            )
            start += size

    def _unload(self) -> None:
        engine, self._engine = self._engine, None
        self.state = "unloaded"
        for job in self.queue.close():
            job.post(Failed(ModelUnavailable("HexaHub unloaded this model; try again")))
        if engine is not None:
            try:
                engine.close()
            except Exception:  # pragma: no cover - freeing memory must not raise
                log.exception("unloading local model %s", self.model.name)
        metrics.forget(self.model.name, self.model.kind)
        log.info("unloaded local model %s", self.model.name)
