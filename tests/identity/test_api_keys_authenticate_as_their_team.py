"""API keys: generated once, stored hashed, found by prefix, refused when expired or revoked."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from corral.api import Invalid
from corral.identity import KeyIndex, generate_api_key, hash_api_key

from .helpers import START, api_key, team

KEY_FORMAT = re.compile(r"^crl_[a-z2-7]{12}_[A-Za-z0-9_-]{43}$")


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def test_generated_keys_have_the_documented_shape_and_are_unique():
    keys = [generate_api_key() for _ in range(50)]
    assert all(KEY_FORMAT.match(key.plaintext) for key in keys)
    assert all(key.plaintext.startswith(f"crl_{key.prefix}_") for key in keys)
    assert len({key.plaintext for key in keys}) == 50
    assert len({key.salt for key in keys}) == 50


def test_the_stored_hash_is_salted_and_never_the_secret():
    key = generate_api_key()
    secret = key.plaintext[len(f"crl_{key.prefix}_") :]
    assert secret not in key.hash
    assert key.hash == hash_api_key(key.plaintext, bytes.fromhex(key.salt))
    assert key.hash != hash_api_key(key.plaintext, bytes(16))


def test_a_valid_key_authenticates_as_its_team_with_the_team_labels():
    key = generate_api_key()
    index = KeyIndex.build([api_key("ci", key, "search")], [team("search", tier="gold")])
    principal = index.authenticate(key.plaintext)
    assert principal is not None
    assert (principal.kind, principal.id, principal.team, principal.namespace) == (
        "team-key",
        "default/ci",
        "search",
        "default",
    )
    assert dict(principal.labels) == {"tier": "gold"}
    assert principal.act == ()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
        lambda k: k[:-1],
        lambda k: k + "x",
        lambda k: k.replace("crl_", "crk_"),
        lambda k: k.upper(),
        lambda k: k[:0],
        lambda k: "Bearer " + k,
        lambda k: k[:-1] + "é",
    ],
    ids=[
        "wrong-secret",
        "short",
        "long",
        "wrong-scheme",
        "upper",
        "empty",
        "with-scheme",
        "non-ascii",
    ],
)
def test_anything_but_the_exact_key_is_refused(mangle):
    key = generate_api_key()
    index = KeyIndex.build([api_key("ci", key, "search")], [team("search")])
    assert index.authenticate(mangle(key.plaintext)) is None
    assert index.authenticate(key.plaintext) is not None


@pytest.mark.parametrize("cache_size", [0, 1])
def test_keys_authenticate_with_the_cache_off_or_tiny(cache_size: int):
    first, second = generate_api_key(), generate_api_key()
    objects = [api_key("a", first, "search"), api_key("b", second, "search")]
    index = KeyIndex.build(objects, [team("search")], cache_size=cache_size)
    for _ in range(2):
        assert [index.authenticate(k.plaintext) is not None for k in (first, second)] == [True] * 2


def test_a_negative_cache_size_is_an_error():
    with pytest.raises(ValueError, match="cache_size must be 0 or more"):
        KeyIndex.build([], [], cache_size=-1)


def test_an_unknown_key_is_refused():
    index = KeyIndex.build([api_key("ci", generate_api_key(), "search")], [team("search")])
    assert index.authenticate(generate_api_key().plaintext) is None


def test_a_key_is_refused_from_its_expiry_on():
    key = generate_api_key()
    obj = api_key("ci", key, "search", expiresAt=rfc3339(START + 60))
    index = KeyIndex.build([obj], [team("search")])
    assert index.authenticate(key.plaintext, now=START) is not None
    assert index.authenticate(key.plaintext, now=START + 59.9) is not None
    # Also when the verified key sits in the cache.
    assert index.authenticate(key.plaintext, now=START + 60) is None
    assert index.authenticate(key.plaintext, now=START + 3600) is None


def test_expiry_with_an_offset_is_honoured():
    key = generate_api_key()
    obj = api_key("ci", key, "search", expiresAt="2027-01-01T02:00:00+02:00")
    index = KeyIndex.build([obj], [team("search")])
    midnight_utc = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert index.authenticate(key.plaintext, now=midnight_utc - 1) is not None
    assert index.authenticate(key.plaintext, now=midnight_utc) is None


def test_revocation_takes_effect_when_the_new_snapshot_is_swapped_in():
    key = generate_api_key()
    teams = [team("search")]
    before = KeyIndex.build([api_key("ci", key, "search")], teams)
    assert before.authenticate(key.plaintext) is not None
    after = KeyIndex.build([api_key("ci", key, "search", revoked=True)], teams)
    assert after.authenticate(key.plaintext) is None
    assert len(after) == 0
    # Snapshots are immutable: the old one (still cached key and all) is unchanged until swapped.
    assert before.authenticate(key.plaintext) is not None


def test_a_key_being_deleted_is_refused():
    key = generate_api_key()
    obj = api_key("ci", key, "search")
    obj["metadata"]["deletionTimestamp"] = "2026-11-24T00:00:00Z"
    assert KeyIndex.build([obj], [team("search")]).authenticate(key.plaintext) is None


def test_a_key_of_a_missing_team_is_refused_and_reported():
    key = generate_api_key()
    index = KeyIndex.build([api_key("ci", key, "search")], [team("search", namespace="other")])
    assert index.authenticate(key.plaintext) is None
    assert index.problems == ("ApiKey/default/ci: team 'search' does not exist in 'default'",)


def test_keys_sharing_a_prefix_each_authenticate_as_their_own():
    first, second = generate_api_key(), generate_api_key()
    # Forge the second onto the first's prefix, as a hand-written object could.
    second_secret = second.plaintext[len(f"crl_{second.prefix}_") :]
    twin_plaintext = f"crl_{first.prefix}_{second_secret}"
    twin_hash = hash_api_key(twin_plaintext, bytes.fromhex(second.salt))
    twin = second._replace(plaintext=twin_plaintext, prefix=first.prefix, hash=twin_hash)
    index = KeyIndex.build(
        [api_key("a", first, "alpha"), api_key("b", twin, "beta")], [team("alpha"), team("beta")]
    )
    first_principal = index.authenticate(first.plaintext)
    twin_principal = index.authenticate(twin.plaintext)
    assert first_principal is not None
    assert first_principal.team == "alpha"
    assert twin_principal is not None
    assert twin_principal.team == "beta"


def test_building_from_the_wrong_kind_is_an_error():
    with pytest.raises(ValueError, match="expected ApiKey objects, got Team/default/search"):
        KeyIndex.build([team("search")], [])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"expiresAt": "next week"}, "not an RFC 3339 time"),
        ({"expiresAt": "2030-01-01T00:00:00"}, "needs a time zone"),
        ({"prefix": "ABC"}, "12 characters"),
        ({"salt": "zz"}, "32 lower-case hex"),
        ({"hash": "00"}, "64 lower-case hex"),
        ({"team": "Not_A_Name"}, "not a valid Team name"),
        ({"secret": "x"}, "unknown field"),
    ],
)
def test_apikey_objects_are_validated_on_the_way_in(spec: dict[str, str], message: str):
    with pytest.raises(Invalid) as caught:
        api_key("ci", generate_api_key(), "search", **spec)
    assert message in str(caught.value)


def test_a_plaintext_key_pasted_into_the_description_is_refused():
    key = generate_api_key()
    with pytest.raises(Invalid, match="plaintext API key"):
        api_key("ci", key, "search", description=f"for CI: {key.plaintext}")


def test_team_labels_use_label_syntax():
    with pytest.raises(Invalid, match="label key"):
        team("search", **{"bad key!": "x"})
