"""Inclusion and consistency proofs: every proof the tree hands out verifies against the root it
was made for (RFC 9162's verification algorithms), and any changed input makes it fail; the
roots match RFC 6962's recursive definition; proofs from a stored log check against its signed
checkpoints."""

from __future__ import annotations

import hashlib

import pytest
from audit_target import AuditTarget, event

from corral.audit import consistency_proof, inclusion_proof, verify_consistency, verify_inclusion
from corral.audit.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_path,
    inclusion_path,
    root_of,
)
from corral.audit.record import leaf_hash, node_hash

LEAVES = [leaf_hash(str(n).encode()) for n in range(33)]


def recursive_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(recursive_root(leaves[:k]), recursive_root(leaves[k:]))


def test_incremental_roots_match_the_recursive_definition() -> None:
    accumulator = MerkleAccumulator()
    assert accumulator.root() == EMPTY_ROOT == recursive_root([])
    for size, leaf in enumerate(LEAVES, start=1):
        accumulator.push(leaf)
        assert accumulator.root() == recursive_root(LEAVES[:size])


def test_every_inclusion_proof_verifies_and_wrong_inputs_do_not() -> None:
    for size in range(1, len(LEAVES) + 1):
        root = root_of(LEAVES[:size])
        for index in range(size):
            path = inclusion_path(LEAVES[:size], index)
            assert verify_inclusion(LEAVES[index], index, size, path, root)
            wrong_leaf = LEAVES[(index + 1) % len(LEAVES)]
            assert not verify_inclusion(wrong_leaf, index, size, path, root)
            if size > 1:
                assert not verify_inclusion(LEAVES[index], (index + 1) % size, size, path, root)
                assert not verify_inclusion(LEAVES[index], index, size, path[:-1], root)
        assert not verify_inclusion(LEAVES[0], size, size, [], root)


def test_every_consistency_proof_verifies_and_wrong_roots_do_not() -> None:
    for new_size in range(1, len(LEAVES) + 1):
        new_root = root_of(LEAVES[:new_size])
        for old_size in range(1, new_size + 1):
            old_root = root_of(LEAVES[:old_size])
            path = consistency_path(LEAVES[:new_size], old_size)
            assert verify_consistency(old_size, new_size, old_root, new_root, path)
            if old_size < new_size:
                assert not verify_consistency(old_size, new_size, new_root, new_root, path)
                assert not verify_consistency(old_size, new_size, old_root, old_root, path)


def test_proofs_for_positions_outside_the_tree_are_refused() -> None:
    with pytest.raises(ValueError, match="leaf 5 is outside a tree of 5"):
        inclusion_path(LEAVES[:5], 5)
    with pytest.raises(ValueError, match="old size 0 must be between 1 and 5"):
        consistency_path(LEAVES[:5], 0)


async def test_proofs_from_a_stored_log_check_against_its_checkpoints(
    target: AuditTarget,
) -> None:
    log = await target.log()
    for n in range(6):
        await log.append(event(n))
    old = await log.checkpoint()
    for n in range(6, 13):
        await log.append(event(n))
    new = await log.checkpoint()
    assert old is not None
    assert new is not None
    records = [record async for record in log.storage.records()]
    for record in records:
        path = await inclusion_proof(log.storage, record.seq, new.size)
        assert verify_inclusion(record.computed_hash(), record.seq, new.size, path, new.root_hash)
    path = await consistency_proof(log.storage, old.size, new.size)
    assert verify_consistency(old.size, new.size, old.root_hash, new.root_hash, path)
    with pytest.raises(ValueError, match="tree size 14 but the log has 13"):
        await inclusion_proof(log.storage, 0, 14)
