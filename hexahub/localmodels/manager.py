"""The models loaded in this process.

Loaded models are a process resource, so there is one manager per process (`manager()`),
shared by every `local` provider: a gateway reload that re-creates providers keeps the
models that are loaded, and two providers naming the same file with the same options share
one copy. Workers start on the first request for a model and leave after their idle time.
"""

from __future__ import annotations

import atexit
import threading
import time
from pathlib import Path
from typing import Any

from hexahub.localmodels.errors import LocalModelError
from hexahub.localmodels.registry import LocalModel, LocalOptions
from hexahub.localmodels.worker import Job, ModelWorker

WorkerKey = tuple[Any, ...]


def _signature(path: Path) -> tuple[int, int]:
    """Changes when the file (or folder) is replaced, so a failed load is tried again."""
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


class LocalModels:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[WorkerKey, ModelWorker] = {}
        self._failures: dict[WorkerKey, tuple[tuple[int, int], LocalModelError]] = {}

    @staticmethod
    def _key(model: LocalModel, options: LocalOptions) -> WorkerKey:
        return (
            *model.key,
            options.queue_size,
            options.idle_unload_seconds,
            options.embedding_batch_size,
        )

    def submit(self, model: LocalModel, options: LocalOptions, job: Job) -> None:
        """Queue `job` for `model`, loading it first if needed. Raises LocalModelError."""
        key = self._key(model, options)
        with self._lock:
            failed = self._failures.get(key)
            if failed is not None:
                if failed[0] == _signature(model.path):
                    raise failed[1]
                del self._failures[key]
            worker = self._workers.get(key)
            if worker is None:
                worker = ModelWorker(
                    model,
                    queue_size=options.queue_size,
                    idle_unload_seconds=options.idle_unload_seconds,
                    embedding_batch_size=options.embedding_batch_size,
                    retire=self._retire,
                    remember_failure=self._remember_failure,
                )
                self._workers[key] = worker
            worker.submit(job)

    def _retire(self, worker: ModelWorker) -> bool:
        """Called by an idle worker: it may unload when nothing arrived meanwhile."""
        with self._lock:
            if len(worker.queue):
                return False
            self._drop(worker)
            return True

    def _remember_failure(self, worker: ModelWorker, error: LocalModelError) -> None:
        with self._lock:
            key = self._drop(worker)
            if key is not None:
                self._failures[key] = (_signature(worker.model.path), error)

    def _drop(self, worker: ModelWorker) -> WorkerKey | None:
        for key, found in list(self._workers.items()):
            if found is worker:
                del self._workers[key]
                return key
        return None

    def status(self) -> list[dict[str, Any]]:
        """What is loaded now, for `/api` pages and tests."""
        now = time.monotonic()
        with self._lock:
            workers = list(self._workers.values())
        return [
            {
                "model": w.model.name,
                "kind": w.model.kind,
                "path": str(w.model.path),
                "state": w.state,
                "queued": len(w.queue),
                "busy": w.current is not None,
                "memory_bytes": w.memory_bytes,
                "rss_growth_bytes": w.rss_growth_bytes,
                "idle_seconds": round(now - w.last_used, 1),
                "context_size": w.model.context_size,
                "threads": w.model.threads,
                "gpu_layers": w.model.gpu_layers,
            }
            for w in workers
        ]

    def unload_all(self, timeout: float = 10.0) -> None:
        """Stop every worker (cancelling what runs) and wait for them to unload."""
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))


_MANAGER = LocalModels()
# Threads inside llama.cpp must not be torn down mid-call when the interpreter exits.
atexit.register(_MANAGER.unload_all, 5.0)


def manager() -> LocalModels:
    return _MANAGER
