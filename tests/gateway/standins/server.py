"""Run a stand-in app with uvicorn on 127.0.0.1 in a background thread.

    with StandinServer(create_openai_app()) as upstream:
        client = AsyncOpenAI(base_url=upstream.url("/v1"), api_key=upstream.state.api_key)

The socket is bound before the thread starts (no port race); start and stop wait in
bounded loops and raise if the server does not come up or go down in time.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette

from tests.gateway.standins.state import StandinState
from tests.gateway.standins.wire import hide_stream_cuts_from_logs


class StandinServer:
    def __init__(
        self,
        app: Starlette,
        *,
        host: str = "127.0.0.1",
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def state(self) -> StandinState:
        state: StandinState = self.app.state.standin
        return state

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash, no ``/v1``)."""
        if self.port is None:
            raise RuntimeError("the stand-in server is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "") -> str:
        return self.base_url + path

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        if self.running:
            return self
        hide_stream_cuts_from_logs()
        self.state.release_pauses(closing=False)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=5,
            # stop() releases delayed requests; anything else still running after this long
            # is cancelled.
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._error = None

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start()
                self._error = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name=f"standin:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the stand-in server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the stand-in server did not start in {self.start_timeout}s")
            # Waits on the thread, so a crash during startup ends the wait at once.
            self._thread.join(timeout=0.005)
        with socket.create_connection((self.host, self.port), timeout=self.start_timeout):
            pass
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.state.release_pauses(closing=True)
        server.should_exit = True
        thread.join(timeout=self.stop_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=self.stop_timeout)
        if thread.is_alive():
            raise TimeoutError(f"the stand-in server on port {self.port} did not stop")
        self._server = self._thread = None
        self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.port is not None else "stopped"
        return f"<StandinServer {where}>"
