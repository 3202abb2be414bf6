"""Running the real HexaHub app on a real port, for tests that need true HTTP (SDK clients,
browsers, client disconnects)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from hexahub.app import create_app
from hexahub.cli import proxy_options
from hexahub.settings import Settings


@contextmanager
def live_hexahub(settings: Settings, *, start_timeout: float = 30.0) -> Iterator[str]:
    """Serve `settings`' app on 127.0.0.1 (port chosen here) and yield its base URL."""
    # Binding here and handing uvicorn the socket leaves no window for another process.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=5,
            **proxy_options(settings),  # trust forwarded headers as `hexahub serve` does
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not thread.is_alive():
                raise RuntimeError("the HexaHub server thread stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"HexaHub did not answer {base_url}/healthz in time")
            thread.join(timeout=0.05)  # poll interval; returns at once if the thread ends
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
