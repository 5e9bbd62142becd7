"""Signing keys on disk: one PKCS#8 PEM per key and a ``keyring.json`` naming their roles.

The directory is 0700 and every file 0600, written to a temporary name and renamed into place
so a crash never leaves half a key. Loading refuses key files other users can read (as ssh
does) and keys whose thumbprint is not the ``kid`` the manifest gives them.

``encode_keys``/``decode_keys`` carry the same ring as one JSON document (the manifest entries
with their PEMs inline) for a store that encrypts it at rest: the server keeps its workload
signing keys that way, in a Secret every process of a deployment shares.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from corral.identity.jose import PrivateKey
from corral.identity.keys import SigningKey

MANIFEST = "keyring.json"
_PRIVATE_FILE = 0o600
_PRIVATE_DIR = 0o700


def load_keys(directory: Path) -> list[SigningKey] | None:
    """The keys kept in ``directory``, or None when it holds no key ring yet."""
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        return None
    _check_private(manifest_path)
    try:
        manifest = orjson.loads(manifest_path.read_bytes())
        entries = manifest["keys"]
        if not isinstance(entries, list):
            raise TypeError("'keys' is not a list")
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{manifest_path}: not a key ring manifest ({error})") from None
    return [_load_key(directory, index, entry) for index, entry in enumerate(entries)]


def create_keys(directory: Path, keys: Sequence[SigningKey]) -> list[SigningKey]:
    """Write a new ring unless another process got there first; return the ring on disk."""
    _ensure_private_dir(directory)
    for key in keys:
        _write_private(directory / f"{key.kid}.pem", _pem(key.private_key))
    staged = directory / f".{MANIFEST}.new-{os.getpid()}"
    _write_private(staged, _manifest(keys))
    try:
        # link() fails if the manifest exists, so two processes starting at once agree on one.
        os.link(staged, directory / MANIFEST)
    except FileExistsError:
        for key in keys:
            (directory / f"{key.kid}.pem").unlink(missing_ok=True)
    finally:
        staged.unlink(missing_ok=True)
    loaded = load_keys(directory)
    if loaded is None:
        raise RuntimeError(f"{directory / MANIFEST} vanished while being created")
    return loaded


def save_keys(directory: Path, keys: Sequence[SigningKey]) -> None:
    """Make the ring on disk ``keys``: new PEMs first, then the manifest, then drop the rest."""
    _ensure_private_dir(directory)
    wanted = {f"{key.kid}.pem" for key in keys}
    for key in keys:
        path = directory / f"{key.kid}.pem"
        if not path.exists():
            _write_private(path, _pem(key.private_key))
    _write_private(directory / MANIFEST, _manifest(keys))
    for path in directory.glob("*.pem"):
        if path.name not in wanted:
            path.unlink(missing_ok=True)


def _load_key(directory: Path, index: int, entry: Any) -> SigningKey:
    where = f"{directory / MANIFEST}: keys[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
        raise ValueError(f"{where}: needs a string 'kid'")
    kid = entry["kid"]
    path = directory / f"{kid}.pem"
    if "/" in kid or not path.exists():
        raise ValueError(f"{where}: key file {path} is missing")
    _check_private(path)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{where}: {path} is not an Ed25519 or EC key")
    return _with_roles(f"{where} ({path})", loaded, entry)


def _with_roles(where: str, private_key: PrivateKey, entry: dict[str, Any]) -> SigningKey:
    """The key with the rotation times its manifest entry gives, checked against its kid."""
    try:
        key = SigningKey.from_private_key(private_key, created_at=float(entry["createdAt"]))
        retired_at, keep_until = entry.get("retiredAt"), entry.get("keepUntil")
        retired = None if retired_at is None else float(retired_at)
        kept = None if keep_until is None else float(keep_until)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None
    if key.kid != entry.get("kid"):
        raise ValueError(f"{where}: holds key {key.kid}, not {entry.get('kid')}")
    return SigningKey(key.kid, key.alg, key.private_key, key.created_at, retired, kept)


def _manifest(keys: Sequence[SigningKey]) -> bytes:
    entries = [
        {
            "kid": key.kid,
            "alg": key.alg,
            "createdAt": key.created_at,
            "retiredAt": key.retired_at,
            "keepUntil": key.keep_until,
        }
        for key in keys
    ]
    return orjson.dumps({"version": 1, "keys": entries}, option=orjson.OPT_INDENT_2)


def _pem(private_key: PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ensure_private_dir(directory: Path) -> None:
    directory.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    _check_private(directory)


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{path} is accessible to other users (mode {mode:o}); "
            f"chmod {'700' if path.is_dir() else '600'} it"
        )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, mode 0600, through a temporary file renamed into place."""
    target = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise
    os.replace(target, path)


def encode_keys(keys: Sequence[SigningKey]) -> str:
    """The ring as one JSON document (manifest entries with their PKCS#8 PEMs inline), for a
    store that keeps it encrypted at rest, such as a ``Secret``."""
    entries = [
        {
            "kid": key.kid,
            "alg": key.alg,
            "createdAt": key.created_at,
            "retiredAt": key.retired_at,
            "keepUntil": key.keep_until,
            "pem": _pem(key.private_key).decode("ascii"),
        }
        for key in keys
    ]
    return orjson.dumps({"version": 1, "keys": entries}).decode()


def decode_keys(text: str, where: str) -> list[SigningKey]:
    """The keys of a document ``encode_keys`` wrote; ValueError naming ``where`` and the
    entry at fault."""
    try:
        document = orjson.loads(text)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError("'keys' is not a list")
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: not a key ring document ({error})") from None
    keys: list[SigningKey] = []
    for index, entry in enumerate(entries):
        at = f"{where}: keys[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("pem"), str):
            raise ValueError(f"{at}: needs a string 'kid' and 'pem'")
        try:
            loaded = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{at}: 'pem' is not a private key ({error})") from None
        if not isinstance(loaded, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"{at}: not an Ed25519 or EC key")
        keys.append(_with_roles(at, loaded, entry))
    return keys
