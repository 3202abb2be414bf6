"""Files only HexaHub's own user may read: the data directory and the databases in it.

The data directory holds the SQLite databases, the signing key and the vault key, so it
is kept at mode 0700 and its files at 0600, whatever the process's umask: modes are set
with chmod after creating, never left to the umask. SQLite on unix creates a database's
`-wal`, `-shm` and `-journal` files with the database file's own mode, so creating the
database file 0600 before SQLite opens it is what keeps those private too; ones left by
an older version are tightened on open.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("hexahub.files")

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    """Take group and other permissions away from `path`, if it has any."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077 == 0:
        return
    try:
        os.chmod(path, mode)
    except PermissionError:
        # Not ours (a volume mounted with another owner): say so rather than fail to start.
        log.warning(
            "%s can be read by other users (mode %o) and is not ours to change; run: chmod %o %s",
            path,
            current,
            mode,
            path,
        )


def private_directory(path: Path) -> Path:
    """Create `path` (and missing parents) with mode 0700; tighten it when it exists."""
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=PRIVATE_DIRECTORY)
        except FileExistsError:
            pass  # another process created it first; the chmod below still applies
        else:
            os.chmod(path, PRIVATE_DIRECTORY)  # mkdir's mode is filtered by the umask
    _tighten(path, PRIVATE_DIRECTORY)
    return path


def private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists; tighten it when it exists."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        _tighten(path, PRIVATE_FILE)
        return
    os.close(fd)
    os.chmod(path, PRIVATE_FILE)  # the open's mode is filtered by the umask


def prepare_sqlite_file(path: Path) -> None:
    """Make ready for SQLite to open `path`: a missing folder is created 0700 (an existing
    one is left as it is: it may be shared, like /tmp), the database file 0600, and its
    companion files left by earlier runs are tightened to 0600."""
    path = Path(path)
    if not path.parent.is_dir():
        private_directory(path.parent)
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        _tighten(path.with_name(path.name + suffix), PRIVATE_FILE)
