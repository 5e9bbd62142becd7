"""The access feed builds a caller's Cedar entity once and reuses it; two callers that differ in
anything a policy can read (delegation chain, labels, namespace) never share one."""

from typing import cast

from corral.identity import Principal
from corral.server.access_feed import AccessFeed
from corral.store.protocol import Store

AGENT = "spiffe://corral.local/ns/default/agent/writer"


def feed() -> AccessFeed:
    return AccessFeed(cast(Store, None), lambda _token: False)


def test_the_same_caller_reuses_one_entity():
    access = feed()
    first = access.principal_entity(Principal("workload", AGENT, team="docs", namespace="default"))
    again = access.principal_entity(Principal("workload", AGENT, team="docs", namespace="default"))
    assert again is first


def test_a_different_delegation_chain_labels_or_namespace_is_another_entity():
    access = feed()
    plain = Principal("workload", AGENT, team="docs", namespace="default")
    variants = [
        Principal("workload", AGENT, team="docs", namespace="default", act=("user:alice",)),
        Principal("workload", AGENT, team="docs", namespace="default", labels={"tier": "gold"}),
        Principal("workload", AGENT, team="docs", namespace="other"),
    ]
    base = access.principal_entity(plain)
    entities = [access.principal_entity(variant) for variant in variants]
    assert all(entity is not base for entity in entities)
    assert len({id(entity) for entity in entities}) == len(variants)
    # And the base is still the one built for the plain caller.
    assert access.principal_entity(plain) is base
