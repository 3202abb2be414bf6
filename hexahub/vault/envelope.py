"""Envelope encryption of one secret version.

Each version's mapping of key -> value is encrypted with AES-256-GCM under a data key made
for that version alone; the data key is wrapped (AES-256-GCM again) by the keyring's active
master key. The workspace id, path and version number go into both as associated data, so a
ciphertext or wrapped key copied to another path, version or workspace fails its tag check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hexahub.vault.keyring import NONCE_BYTES, Keyring, VaultIntegrityError

VALUE_CONTEXT = "hexahub-vault-value/v1"
DATA_KEY_CONTEXT = "hexahub-vault-data-key/v1"


@dataclass(frozen=True)
class Location:
    """Where a version lives: what its associated data binds it to."""

    workspace_id: str
    path: str
    version: int

    def aad(self, context: str) -> bytes:
        return json.dumps(
            [context, self.workspace_id, self.path, self.version], separators=(",", ":")
        ).encode()

    def describe(self) -> str:
        return f"version {self.version} of secret {self.path}"


@dataclass(frozen=True)
class Sealed:
    nonce: bytes
    ciphertext: bytes
    master_key_id: str
    wrapped_key: bytes


def encode_data(data: dict[str, str]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def seal(keyring: Keyring, data: dict[str, str], where: Location) -> Sealed:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, encode_data(data), where.aad(VALUE_CONTEXT))
    master_key_id, wrapped = keyring.wrap(data_key, where.aad(DATA_KEY_CONTEXT))
    return Sealed(nonce, ciphertext, master_key_id, wrapped)


def unseal(keyring: Keyring, sealed: Sealed, where: Location) -> dict[str, str]:
    data_key = keyring.unwrap(
        sealed.master_key_id,
        sealed.wrapped_key,
        where.aad(DATA_KEY_CONTEXT),
        what=where.describe(),
    )
    try:
        plain = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, where.aad(VALUE_CONTEXT))
    except InvalidTag:
        raise VaultIntegrityError(
            f"{where.describe()} failed its integrity check: the stored data was altered or "
            "copied from another secret. Restore it from a backup or write a new version."
        ) from None
    loaded = json.loads(plain)
    return {str(k): str(v) for k, v in loaded.items()}


def rewrap(keyring: Keyring, sealed: Sealed, where: Location) -> tuple[str, bytes]:
    """The same data key wrapped by the active master key (the value is not re-encrypted)."""
    aad = where.aad(DATA_KEY_CONTEXT)
    data_key = keyring.unwrap(sealed.master_key_id, sealed.wrapped_key, aad, what=where.describe())
    return keyring.wrap(data_key, aad)
