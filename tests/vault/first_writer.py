"""A replica's first writes, for test_first_use: run as its own process.

    python -m tests.vault.first_writer SETTINGS_JSON WORKSPACE_ID PREFIX WRITERS

Connects, says `ready`, waits for the line `go` on its standard input (so every replica
starts writing at the same moment), writes WRITERS secrets at once and prints one JSON
line: each write's outcome, "ok" or the error's class and message.
"""

from __future__ import annotations

import asyncio
import json
import sys

from hexahub.core.db import Database
from hexahub.core.errors import HexaHubError
from hexahub.settings import Settings
from hexahub.vault import service

START_TIMEOUT = 60.0


async def main(settings: Settings, workspace_id: str, prefix: str, writers: int) -> None:
    database = Database(settings)
    await database.ping()
    print("ready", flush=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), START_TIMEOUT)
    except TimeoutError:
        raise SystemExit("the test never said go") from None
    if line.strip() != "go":
        raise SystemExit(f"expected 'go', got {line!r}")

    async def write(number: int) -> str:
        async with database.sessions() as db:
            try:
                await service.write_secret(
                    db,
                    settings,
                    service.Caller.system("test"),
                    workspace_id,
                    f"{prefix}/{number}",
                    {"value": f"{prefix}-{number}"},
                )
            except HexaHubError as exc:
                return f"{type(exc).__name__}: {exc.message}"
        return "ok"

    outcomes = await asyncio.gather(*(write(n) for n in range(writers)))
    await database.dispose()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    values, workspace, prefix, count = sys.argv[1:5]
    asyncio.run(main(Settings(**json.loads(values)), workspace, prefix, int(count)))
