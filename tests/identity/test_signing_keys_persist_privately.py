"""Signing keys survive a restart, on disk only as 0600 files in a 0700 directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from corral.identity import KeyRing, TokenIssuer, Verifier, keyfiles

from .helpers import AUDIENCE, ISSUER, Clock


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_open_creates_a_key_and_reopening_loads_the_same_one(
    tmp_path: Path, clock: Clock, algorithm: str
):
    directory = tmp_path / "keys"
    created = KeyRing.open(directory, alg=algorithm, clock=clock)  # type: ignore[arg-type]
    token = TokenIssuer(created, ISSUER, clock=clock).mint("alice", AUDIENCE, 60)
    reopened = KeyRing.open(directory, clock=clock)
    assert reopened.current.kid == created.current.kid
    assert reopened.current.alg == algorithm
    verifier = Verifier(reopened.jwks(), issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(token).principal.id == "alice"


def test_key_files_and_directory_are_private(tmp_path: Path, clock: Clock):
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, clock=clock)
    ring.rotate()
    assert mode(directory) == 0o700
    files = sorted(directory.iterdir())
    assert {path.name for path in files} == {
        "keyring.json",
        *(f"{key.kid}.pem" for key in ring.keys),
    }
    assert all(mode(path) == 0o600 for path in files)


def test_rotation_is_persisted_and_lapsed_key_files_are_removed(tmp_path: Path, clock: Clock):
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, max_token_ttl=60, clock=clock)
    first = ring.current
    ring.rotate()
    reopened = KeyRing.open(directory, max_token_ttl=60, clock=clock)
    assert [key.kid for key in reopened.keys] == [key.kid for key in ring.keys]
    assert reopened.keys[0].keep_until == ring.keys[0].keep_until
    clock.advance(3600)
    ring.rotate()
    assert not (directory / f"{first.kid}.pem").exists()


def test_key_files_readable_by_others_are_refused(tmp_path: Path, clock: Clock):
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, clock=clock)
    pem = directory / f"{ring.current.kid}.pem"
    os.chmod(pem, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        KeyRing.open(directory, clock=clock)


def test_a_key_file_that_does_not_match_its_kid_is_refused(tmp_path: Path, clock: Clock):
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, clock=clock)
    other = tmp_path / "other"
    stranger = KeyRing.open(other, clock=clock)
    (directory / f"{ring.current.kid}.pem").write_bytes(
        (other / f"{stranger.current.kid}.pem").read_bytes()
    )
    with pytest.raises(ValueError, match=f"holds key {stranger.current.kid}"):
        KeyRing.open(directory, clock=clock)


def test_a_corrupt_manifest_is_refused_with_its_path(tmp_path: Path, clock: Clock):
    directory = tmp_path / "keys"
    KeyRing.open(directory, clock=clock)
    (directory / "keyring.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"keyring\.json: not a key ring manifest"):
        KeyRing.open(directory, clock=clock)


def test_a_missing_key_file_is_refused(tmp_path: Path, clock: Clock):
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, clock=clock)
    (directory / f"{ring.current.kid}.pem").unlink()
    with pytest.raises(ValueError, match="is missing"):
        KeyRing.open(directory, clock=clock)


def test_when_two_processes_create_a_ring_at_once_both_end_up_with_the_first(
    tmp_path: Path, clock: Clock
):
    directory = tmp_path / "keys"
    winner = KeyRing.open(directory, clock=clock)
    loser = KeyRing.generate(clock=clock).current
    # The loser reaches create_keys after the winner's manifest is in place.
    ring_on_disk = keyfiles.create_keys(directory, [loser])
    assert [key.kid for key in ring_on_disk] == [winner.current.kid]
    assert not (directory / f"{loser.kid}.pem").exists()
    assert sorted(path.name for path in directory.iterdir()) == sorted(
        ["keyring.json", f"{winner.current.kid}.pem"]
    )
