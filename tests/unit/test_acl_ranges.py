"""PolicySet.read_ranges: the key ranges a listing must enumerate for a group.

The property that matters for security and memory is one-sided: every key the
group may read lies inside a returned range, so a listing that enumerates only
those ranges misses nothing, and whatever lies outside is never touched.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from vaultkey.policy.engine import Capability, Policy, PolicySet, Rule

SEGS = ["a", "b", "c"]


def _acl(rules: list[Rule]) -> PolicySet:
    return PolicySet([Policy("g", tuple(rules))])


def _covered(key: str, ranges: list[tuple[str, bool]]) -> bool:
    return any(key == target if exact else key.startswith(target) for target, exact in ranges)


ALL_KEYS = ["/" + "/".join(p) for n in (1, 2, 3) for p in itertools.product(SEGS, repeat=n)]
ALL_PREFIXES = ["/"] + ["/" + "".join(s + "/" for s in p)
                        for n in (1, 2) for p in itertools.product(SEGS, repeat=n)]

rule_st = st.builds(
    lambda segs, is_prefix, allow, deny: Rule(
        "/" + "".join(s + "/" for s in segs) if is_prefix else "/" + "/".join(segs),
        is_prefix, frozenset(allow), frozenset(deny)),
    st.lists(st.sampled_from([*SEGS, "+"]), min_size=1, max_size=3),
    st.booleans(),
    st.sets(st.sampled_from([Capability.READ, Capability.LIST]), min_size=1),
    st.sets(st.sampled_from([Capability.READ]), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rule_st, min_size=1, max_size=5))
def test_every_readable_key_under_the_prefix_lies_in_a_returned_range(rules):
    acl = _acl(rules)
    for prefix in ALL_PREFIXES:
        ranges = acl.read_ranges("g", prefix)
        for target, exact in ranges:  # ranges stay inside the request
            assert target.startswith(prefix), (prefix, target)
            assert exact or target.endswith("/")
        for key in ALL_KEYS:
            if key.startswith(prefix) and acl.allowed("g", key, Capability.READ):
                assert _covered(key, ranges), (prefix, key, ranges, rules)


def test_a_group_without_read_rules_enumerates_nothing():
    acl = _acl([Rule("/", True, frozenset({Capability.LIST}))])
    assert acl.read_ranges("g", "/") == []
    assert acl.read_ranges("nobody", "/") == []


def test_ranges_are_the_rules_subtrees_not_the_whole_keyspace():
    acl = _acl([Rule("/alpha/", True, frozenset({Capability.READ, Capability.LIST})),
                Rule("/services/+/config/", True, frozenset({Capability.READ})),
                Rule("/beta/public/motd", False, frozenset({Capability.READ})),
                Rule("/alpha/inner/", True, frozenset({Capability.READ}))])
    assert acl.read_ranges("g", "/") == [
        ("/alpha", True), ("/alpha/", False), ("/beta/public/motd", True),
        ("/services/", False)]
    assert acl.read_ranges("g", "/alpha/x/") == [("/alpha/x/", False)]
    assert acl.read_ranges("g", "/beta/") == [("/beta/public/motd", True)]
    assert acl.read_ranges("g", "/gamma/") == []
    assert acl.read_ranges("g", "/services/web/") == [("/services/web/", False)]
