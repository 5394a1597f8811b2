"""The ACL trie decides exactly as the definition (a scan of the ordered rules) does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vaultkey.policy.engine import Capability, Policy, PolicySet, Rule

SEGS = st.sampled_from(["a", "b", "c", "+"])
CAPS = st.sets(st.sampled_from(list(Capability)), max_size=2)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    segs = draw(st.lists(SEGS, max_size=4))
    is_prefix = draw(st.booleans()) or not segs
    path = "/" + "/".join(segs) + ("/" if is_prefix and segs else "")
    allow, deny = draw(CAPS), draw(CAPS)
    return Rule(path=path, is_prefix=is_prefix, allow=frozenset(allow), deny=frozenset(deny))


@st.composite
def targets(draw: st.DrawFn) -> tuple[str, bool]:
    segs = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "+"]), min_size=0, max_size=5))
    is_prefix = draw(st.booleans()) or not segs
    return "/" + "/".join(segs) + ("/" if is_prefix and segs else ""), is_prefix


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.lists(rules(), max_size=12), st.lists(targets(), min_size=1, max_size=8))
def test_trie_matches_the_scan(rule_list: list[Rule], target_list: list[tuple[str, bool]]
                               ) -> None:
    acl = PolicySet([Policy("g", tuple(rule_list))])
    for path, is_prefix in target_list:
        for cap in Capability:
            assert (acl._match("g", path, cap, is_prefix)
                    == acl._match_scan("g", path, cap, is_prefix)), (path, cap)


def test_ten_thousand_rules() -> None:
    """Correct at scale (scripts/bench measures the time: P7)."""
    many = tuple(Rule(path=f"/svc/{i}/", is_prefix=True, allow=frozenset({Capability.READ}))
                 for i in range(10_000))
    acl = PolicySet([Policy("g", many)])
    assert acl.allowed("g", "/svc/9999/db", Capability.READ)
    assert not acl.allowed("g", "/other/x", Capability.READ)
    assert acl.decide("g", "/svc/5000/x", "read").rule == many[5000]
