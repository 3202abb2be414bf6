"""Master keys and envelope encryption, without a database."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from hexahub.vault import envelope, keyring
from hexahub.vault.envelope import Location
from hexahub.vault.keyring import Keyring, MasterKey, VaultIntegrityError, VaultLocked

HERE = Location("ws-1", "infra/proxmox/api-token", 3)


def ring(*keys: MasterKey) -> Keyring:
    return Keyring(list(keys), source="test")


def test_seal_and_unseal_round_trip() -> None:
    key = MasterKey.generate()
    sealed = envelope.seal(ring(key), {"token": "abc", "user": "root@pam"}, HERE)
    assert sealed.master_key_id == key.id
    assert b"abc" not in sealed.ciphertext and b"root@pam" not in sealed.ciphertext
    assert envelope.unseal(ring(key), sealed, HERE) == {"token": "abc", "user": "root@pam"}


def test_each_version_gets_its_own_data_key_and_nonce() -> None:
    key = MasterKey.generate()
    first = envelope.seal(ring(key), {"v": "same"}, HERE)
    second = envelope.seal(ring(key), {"v": "same"}, HERE)
    assert first.ciphertext != second.ciphertext
    assert first.wrapped_key != second.wrapped_key
    assert first.nonce != second.nonce


def test_wrong_master_key_fails_closed_by_id() -> None:
    sealed = envelope.seal(ring(MasterKey.generate()), {"v": "x"}, HERE)
    other = MasterKey.generate()
    with pytest.raises(VaultLocked) as caught:
        envelope.unseal(ring(other), sealed, HERE)
    message = caught.value.message
    assert sealed.master_key_id in message and other.id in message
    assert "wrong key" in message and "Nothing was decrypted" in message


def test_a_wrong_key_claiming_the_right_id_is_refused_by_the_tag() -> None:
    real = MasterKey.generate()
    sealed = envelope.seal(ring(real), {"v": "x"}, HERE)
    impostor = MasterKey(real.id, os.urandom(32))
    with pytest.raises(VaultIntegrityError):
        envelope.unseal(ring(impostor), sealed, HERE)


@pytest.mark.parametrize("part", ["ciphertext", "nonce", "wrapped_key"])
def test_tampering_with_any_stored_part_is_detected(part: str) -> None:
    key = MasterKey.generate()
    sealed = envelope.seal(ring(key), {"v": "x"}, HERE)
    raw = bytearray(getattr(sealed, part))
    raw[-1] ^= 0x01
    tampered = envelope.Sealed(**{**sealed.__dict__, part: bytes(raw)})
    with pytest.raises(VaultIntegrityError) as caught:
        envelope.unseal(ring(key), tampered, HERE)
    assert "integrity check" in caught.value.message


@pytest.mark.parametrize(
    "elsewhere",
    [
        Location("ws-1", "infra/proxmox/other", 3),
        Location("ws-1", "infra/proxmox/api-token", 4),
        Location("ws-2", "infra/proxmox/api-token", 3),
    ],
)
def test_a_ciphertext_does_not_open_at_another_path_version_or_workspace(
    elsewhere: Location,
) -> None:
    key = MasterKey.generate()
    sealed = envelope.seal(ring(key), {"v": "x"}, HERE)
    with pytest.raises(VaultIntegrityError):
        envelope.unseal(ring(key), sealed, elsewhere)


def test_rewrap_moves_a_data_key_to_the_active_key() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    sealed = envelope.seal(ring(old), {"v": "x"}, HERE)
    both = ring(new, old)
    new_id, wrapped = envelope.rewrap(both, sealed, HERE)
    assert new_id == new.id
    moved = envelope.Sealed(sealed.nonce, sealed.ciphertext, new_id, wrapped)
    assert envelope.unseal(ring(new), moved, HERE) == {"v": "x"}


def test_key_file_round_trip_and_parse_errors_never_echo(tmp_path: Path) -> None:
    keys = [MasterKey.generate(), MasterKey.generate()]
    path = tmp_path / "vault.key"
    keyring.replace_key_file(path, keys, {})
    loaded = Keyring.from_file(path)
    assert loaded.ids == [k.id for k in keys] and loaded.active.id == keys[0].id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    garbage = "not-a-key-but-maybe-a-password-" + "z" * 20
    path.write_text(f"# comment\n{keys[0].encoded()}\n{garbage}\n")
    with pytest.raises(VaultLocked) as caught:
        Keyring.from_file(path)
    assert "line 3" in caught.value.message and garbage not in caught.value.message
    short = base64.b64encode(os.urandom(16)).decode()
    with pytest.raises(ValueError) as too_short:
        MasterKey.decode(short)
    assert short not in str(too_short.value)


def test_env_key_list_first_is_active() -> None:
    first, second = MasterKey.generate(), MasterKey.generate()
    keys = keyring.parse_key_list(f" {first.encoded()}, {second.encoded()} ")
    assert [k.id for k in keys] == [first.id, second.id]
    with pytest.raises(VaultLocked) as caught:
        keyring.parse_key_list(f"{first.encoded()},oops")
    assert "key 2" in caught.value.message and "oops" not in caught.value.message


def test_create_key_file_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "vault.key"
    created = keyring.create_key_file(path)
    assert created is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.from_file(path).ids == [created.id]
    assert keyring.create_key_file(path) is None  # the existing key is kept
    assert Keyring.from_file(path).ids == [created.id]
    assert [p.name for p in path.parent.iterdir()] == ["vault.key"]  # no drafts left


def test_keyring_rereads_a_changed_file(tmp_path: Path) -> None:
    """A server's keyring follows `rotate-master` run by another process: no restart."""
    old, new = MasterKey.generate(), MasterKey.generate()
    path = tmp_path / "vault.key"
    keyring.replace_key_file(path, [old], {})
    live = Keyring.from_file(path)
    sealed_old = envelope.seal(live, {"v": "old"}, HERE)
    keyring.replace_key_file(path, [new, old], {})
    # The file changed size, so the change is seen even within one mtime tick.
    assert live.active.id == new.id
    sealed_new = envelope.seal(live, {"v": "new"}, HERE)
    assert sealed_new.master_key_id == new.id
    assert envelope.unseal(live, sealed_old, HERE) == {"v": "old"}
    # A key dropped from the file stays usable by a process that has already seen it.
    keyring.replace_key_file(path, [new], {})
    assert envelope.unseal(live, sealed_old, HERE) == {"v": "old"}


def test_master_key_repr_hides_the_material() -> None:
    key = MasterKey.generate()
    assert key.encoded() not in repr(key) and repr(key.material) not in repr(key)
