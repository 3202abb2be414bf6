"""Server-rendered pages (placeholder until the web UI shell lands)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pathlib import Path

from hexahub.core.runtime import Runtime

log = logging.getLogger("hexahub.web")
STATIC_DIR = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


async def announce_setup_link(runtime: Runtime) -> None:
    return None
