"""Sealing small values (provider API keys, repository tokens) with the instance key.

AES-256-GCM under a key derived (HKDF-SHA256) from HEXAHUB_SECRET_KEY; the purpose and the
owning row go in as associated data, so a sealed value cannot be copied to another row.
The vault (hexahub/vault) is the home for secrets people manage; this is for values
HexaHub keeps on their behalf inside its own tables.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:v1:"


class SealError(ValueError):
    """A sealed value could not be opened: wrong key, wrong row, or tampered."""


def _key(secret_key: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"hexahub-seal", info=b"field-encryption"
    ).derive(secret_key.encode())


def seal(secret_key: str, plaintext: str, *, context: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_key(secret_key)).encrypt(nonce, plaintext.encode(), context.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(secret_key: str, token: str, *, context: str) -> str:
    if not token.startswith(PREFIX):
        raise SealError("not a sealed value")
    raw = base64.urlsafe_b64decode(token.removeprefix(PREFIX))
    try:
        return AESGCM(_key(secret_key)).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except InvalidTag as exc:
        raise SealError(
            "a sealed value could not be opened: HEXAHUB_SECRET_KEY changed or the data was altered"
        ) from exc
