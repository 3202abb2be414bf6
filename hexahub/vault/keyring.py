"""The vault's master keys: a small keyring read from a file or the environment, never
from the database.

A master key is 32 random bytes, written base64-encoded, one per line (or comma separated
in HEXAHUB_VAULT_MASTER_KEY). The first key wraps new data keys; the keys after it are older
ones still accepted for unwrapping, so a rotation never leaves anything unreadable while it
runs. A key's id is a fingerprint of the key itself (16 hex digits of an HMAC), and every
wrapped data key records the id of the key that wrapped it: a wrong key is recognised by its
id before anything is decrypted, and the error can say which key is missing. HexaHub never
guesses and never returns what a wrong key would produce: AES-GCM's tag refuses it.

The key file is re-read when it changes on disk, so `hexahub vault rotate-master` run beside
a live server takes effect there without a restart.

The vault's first use creates the key file, and it is made atomic with the first secret
stored under it: whoever finds no key holds a database lock (an advisory lock on
PostgreSQL, the write lock on SQLite) until its transaction ends, so among every process
sharing the database (replicas, workers, the CLI) one creates the key and stores under it
while the others wait, then find the key, or find secrets without it and stay locked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.core.db import utcnow
from hexahub.core.errors import HexaHubError
from hexahub.settings import ENV_PREFIX, Settings
from hexahub.vault.models import VaultSecretVersion

log = logging.getLogger("hexahub.vault")

KEY_BYTES = 32
NONCE_BYTES = 12
ENV_NAME = f"{ENV_PREFIX}VAULT_MASTER_KEY"
_ID_LABEL = b"hexahub vault master key id"
# PostgreSQL advisory lock held while the vault's first key is made (any fixed 64-bit number
# no other lock of HexaHub's uses).
FIRST_USE_LOCK = int.from_bytes(
    hashlib.sha256(b"hexahub vault first use").digest()[:8], "big", signed=True
)
_SEPARATORS = re.compile(r"[\s,]+")

FILE_HEADER = """\
# HexaHub vault master keys, written by `hexahub vault init` and `hexahub vault rotate-master`.
# Back this file up away from this machine (a password manager, an offline copy) and keep it
# secret: without it the vault's secrets cannot be read; with it and a copy of the database,
# anyone can read them. The first key wraps new data keys; keys below it are older ones that
# are still accepted for reading until `hexahub vault rotate-master --drop-old` retires them.
"""


class VaultLocked(HexaHubError):
    """The master key needed is missing or unusable: the vault refuses to decrypt."""

    status_code = 503
    code = "vault_locked"


class VaultIntegrityError(HexaHubError):
    """Stored vault data failed its AES-GCM check: altered, moved, or a wrong key."""

    status_code = 500
    code = "vault_integrity_error"


def key_id(material: bytes) -> str:
    return hmac.new(material, _ID_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class MasterKey:
    id: str
    material: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> MasterKey:
        material = secrets.token_bytes(KEY_BYTES)
        return cls(key_id(material), material)

    @classmethod
    def decode(cls, text: str) -> MasterKey:
        """A key from its base64 form. The message never repeats the text it was given."""
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            material = b""
        if len(material) != KEY_BYTES:
            raise ValueError(f"not a base64-encoded {KEY_BYTES}-byte key")
        return cls(key_id(material), material)

    def encoded(self) -> str:
        return base64.b64encode(self.material).decode()


def parse_key_file(text: str, source: str) -> list[MasterKey]:
    keys: list[MasterKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(MasterKey.decode(line))
        except ValueError as exc:
            raise VaultLocked(f"vault master key file {source}, line {number}: {exc}") from None
    if not keys:
        raise VaultLocked(f"vault master key file {source} holds no key")
    return keys


def parse_key_list(text: str) -> list[MasterKey]:
    keys: list[MasterKey] = []
    for number, item in enumerate(filter(None, _SEPARATORS.split(text.strip())), start=1):
        try:
            keys.append(MasterKey.decode(item))
        except ValueError as exc:
            raise VaultLocked(f"{ENV_NAME}, key {number}: {exc}") from None
    if not keys:
        raise VaultLocked(f"{ENV_NAME} is set but holds no key")
    return keys


def render_key_file(keys: list[MasterKey], notes: dict[str, str] | None = None) -> str:
    lines = [FILE_HEADER]
    for key in keys:
        note = (notes or {}).get(key.id, "")
        lines.append(f"# key {key.id}{', ' + note if note else ''}\n{key.encoded()}\n")
    return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def create_key_file(path: Path) -> MasterKey | None:
    """Write a file with one new key; None when the file already exists (another process
    got there first: every process then uses that one)."""
    key = MasterKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        _write_private(draft, render_key_file([key], {key.id: f"created {utcnow():%Y-%m-%d}"}))
        try:
            os.link(draft, path)  # atomic, and refuses to replace an existing file
        except FileExistsError:
            return None
        except OSError:  # a filesystem without hard links
            try:
                _write_private(path, draft.read_text(encoding="utf-8"))
            except FileExistsError:
                return None
    finally:
        draft.unlink(missing_ok=True)
    return key


def replace_key_file(path: Path, keys: list[MasterKey], notes: dict[str, str]) -> None:
    """Rewrite the file atomically (readers see the old or the new file, never half)."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        _write_private(draft, render_key_file(keys, notes))
        os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def file_is_private(path: Path) -> bool:
    return os.name != "posix" or path.stat().st_mode & 0o077 == 0


class Keyring:
    """Master keys by id; the first one wraps. Wraps and unwraps data keys."""

    def __init__(self, keys: list[MasterKey], *, source: str, path: Path | None = None) -> None:
        if not keys:
            raise VaultLocked(f"no vault master key in {source}")
        self._keys = list(keys)
        # Keys seen before a file change stay usable, so a reader never loses a key mid-way.
        self._known = {k.id: k for k in keys}
        self.source = source
        self.path = path
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise VaultLocked(
                f"vault master key file {path} cannot be read ({exc.strerror}); "
                f"fix its permissions or set {ENV_NAME}"
            ) from None
        if not file_is_private(path):
            log.warning(
                "vault master key file %s can be read by other users; run: chmod 600 %s",
                path,
                path,
            )
        return cls(parse_key_file(text, str(path)), source=str(path), path=path)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def refresh(self) -> None:
        """Re-read the key file if it changed since it was last read."""
        if self.path is None:
            return
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        with self._lock:
            try:
                fresh = parse_key_file(self.path.read_text(encoding="utf-8"), str(self.path))
            except (OSError, VaultLocked) as exc:
                log.warning("vault master key file changed but was not re-read: %s", exc)
                return
            self._keys = fresh
            self._known.update({k.id: k for k in fresh})
            self._stamp = stamp

    @property
    def keys(self) -> list[MasterKey]:
        self.refresh()
        return list(self._keys)

    @property
    def active(self) -> MasterKey:
        self.refresh()
        return self._keys[0]

    @property
    def ids(self) -> list[str]:
        return [k.id for k in self.keys]

    def find(self, wanted: str) -> MasterKey | None:
        found = self._known.get(wanted)
        if found is None:
            self.refresh()
            found = self._known.get(wanted)
        return found

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[str, bytes]:
        key = self.active
        nonce = os.urandom(NONCE_BYTES)
        return key.id, nonce + AESGCM(key.material).encrypt(nonce, data_key, aad)

    def unwrap(self, wanted: str, wrapped: bytes, aad: bytes, *, what: str) -> bytes:
        key = self.find(wanted)
        if key is None:
            raise VaultLocked(
                f"{what} was encrypted under vault master key {wanted}, which is not among the "
                f"keys loaded from {self.source} ({', '.join(self.ids)}). This is the wrong key "
                f"file or {ENV_NAME}: restore the right one from your backup. Nothing was "
                "decrypted."
            )
        try:
            return AESGCM(key.material).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise VaultIntegrityError(
                f"the data key of {what} failed its integrity check: the stored data was "
                "altered or copied from another secret. Restore it from a backup or write a "
                "new version."
            ) from None


# --- the process's keyring -----------------------------------------------------------

_cache: dict[tuple[str, str], Keyring] = {}
_cache_lock = threading.Lock()


def key_file_path(settings: Settings) -> Path:
    return (settings.vault_master_key_file or settings.data_dir / "vault.key").expanduser()


def _env_keys(settings: Settings) -> str:
    value = settings.vault_master_key
    return value.get_secret_value().strip() if value is not None else ""


def _cache_key(settings: Settings) -> tuple[str, str]:
    env = _env_keys(settings)
    if env:
        return ("env", hashlib.sha256(env.encode()).hexdigest())
    return ("file", str(key_file_path(settings).resolve()))


def configured_keyring(settings: Settings) -> Keyring | None:
    """The keyring the settings name, or None when no key is configured and no file exists."""
    cache_key = _cache_key(settings)
    with _cache_lock:
        found = _cache.get(cache_key)
    if found is not None:
        return found
    env = _env_keys(settings)
    if env:
        keyring = Keyring(parse_key_list(env), source=ENV_NAME)
    else:
        path = key_file_path(settings)
        if not path.exists():
            return None
        keyring = Keyring.from_file(path)
    with _cache_lock:
        return _cache.setdefault(cache_key, keyring)


def forget_keyrings() -> None:
    """Drop cached keyrings (tests; a CLI that has just rewritten the key file)."""
    with _cache_lock:
        _cache.clear()


async def stored_key_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(VaultSecretVersion)) or 0)


async def lock_first_use(db: AsyncSession) -> None:
    """Serialise the vault's first use across every process sharing the database, until
    the caller's transaction ends (its commit stores the first secret, or it rolls back)."""
    backend = db.get_bind().dialect.name
    if backend == "postgresql":
        await db.execute(select(func.pg_advisory_xact_lock(FIRST_USE_LOCK)))
    elif backend == "sqlite":
        # An update that matches nothing still begins SQLite's write transaction, as BEGIN
        # IMMEDIATE would: other writers wait for it (busy_timeout) until it ends.
        await db.execute(
            update(VaultSecretVersion)
            .where(false())
            .values(version=VaultSecretVersion.version)
            .execution_options(synchronize_session=False)
        )


async def open_keyring(db: AsyncSession, settings: Settings) -> Keyring:
    """The keyring, creating the key file on first use while the vault is still empty.

    A missing key never gets replaced silently once the vault holds anything: that would
    leave every existing secret unreadable, so the vault stays locked instead. The first
    use holds `lock_first_use` until the caller's transaction ends, so the key is created
    once, and the secret stored with it, whoever else arrives at the same moment.
    """
    keyring = configured_keyring(settings)
    if keyring is not None:
        return keyring
    path = key_file_path(settings)
    await lock_first_use(db)
    stored = await stored_key_count(db)
    # Counted first, looked for second: a secret is stored only once its key file exists,
    # so a file missing now, after the count, was missing for those secrets too (or has
    # been deleted since); one made meanwhile by another writer is found here.
    keyring = configured_keyring(settings)
    if keyring is not None:
        return keyring
    if stored:
        raise VaultLocked(
            f"the vault holds {stored} encrypted secret version(s), but its master key file "
            f"{path} does not exist and {ENV_NAME} is not set. Restore the key file from your "
            "backup (or set the variable); a new key could not read the existing secrets. "
            "Several replicas must share one key file or the variable."
        )
    created = create_key_file(path)
    if created is not None:
        log.warning(
            "created the vault master key %s in %s (mode 0600). Back this file up now, away "
            "from this machine: without it the vault's secrets cannot be read. "
            "`hexahub vault status` shows where the key is.",
            created.id,
            path,
        )
    keyring = configured_keyring(settings)
    if keyring is None:  # pragma: no cover - the file was just written
        raise VaultLocked(f"vault master key file {path} could not be created")
    return keyring


def ensure_key_file(settings: Settings) -> tuple[Path, MasterKey | None]:
    """`hexahub vault init`: create the key file unless it exists (then None)."""
    path = key_file_path(settings)
    created = create_key_file(path)
    with _cache_lock:
        _cache.pop(_cache_key(settings), None)
    return path, created
