"""`hexahub serve` as people run it: a real process on a port given with --port."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT = 120.0
SETUP_LINK = re.compile(r"Open (\S+/setup\?token=\S+) to create the first administrator")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Output:
    """The lines a process writes, read by a thread so waiting for one has a deadline."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if found := pattern.search(line):
                return found
        raise AssertionError(f"no line matched {pattern.pattern}; got:\n{''.join(self.seen)}")


def wait_until_up(port: int, timeout: float = 30.0) -> None:
    """The setup link is logged while the app starts, just before uvicorn listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        threading.Event().wait(0.05)  # poll interval
    raise AssertionError(f"nothing answered on port {port} within {timeout} s")


@contextmanager
def hexahub_serve(tmp_path: Path, *args: str, **env: str) -> Iterator[Output]:
    environment = {
        **os.environ,
        "HEXAHUB_DATA_DIR": str(tmp_path / "data"),
        "HEXAHUB_LOCAL_MODELS_ENABLED": "false",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "hexahub.cli", "serve", *args],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield Output(process.stderr)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_on_another_port_prints_a_setup_link_to_that_port(tmp_path: Path) -> None:
    port = free_port()
    with hexahub_serve(tmp_path, "--port", str(port)) as output:
        link = output.wait_for(SETUP_LINK, START_TIMEOUT).group(1)
        assert link.startswith(f"http://127.0.0.1:{port}/setup?token="), link
        wait_until_up(port)
        page = httpx.get(link, timeout=10)
    assert page.status_code == 200
    assert 'name="password"' in page.text  # the form that creates the first administrator


def test_serve_believes_no_forwarded_header_unless_told(tmp_path: Path) -> None:
    """uvicorn on its own believes X-Forwarded-For from 127.0.0.1; `hexahub serve` must
    not, or rotating the header dodges the per-IP sign-in lockout."""
    port = free_port()
    with hexahub_serve(
        tmp_path, "--port", str(port), HEXAHUB_LOGIN_MAX_FAILURES_PER_IP="2"
    ) as output:
        output.wait_for(SETUP_LINK, START_TIMEOUT)
        wait_until_up(port)
        answers = []
        for n in range(3):
            response = httpx.post(
                f"http://127.0.0.1:{port}/api/auth/login",
                json={"email": f"nobody{n}@example.org", "password": "wrong password"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
                timeout=10,
            )
            answers.append(response.status_code)
    assert answers == [401, 401, 429]
