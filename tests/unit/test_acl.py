"""Table-driven tests of vaultkey.policy.engine: rule matching, specificity, parse errors.

Run: ``pytest -q tests/unit/test_acl.py``. Two overlapping groups (payments,
web) plus a list-only audit group are parsed from inline TOML; each case is
(group, path, capability, is_prefix, expected)::

    ("payments", "/payments2/x", "read", False, False)   # sibling prefix
"""

from __future__ import annotations

import pytest

from vaultkey.errors import PolicyError
from vaultkey.policy.engine import Capability, Policy, PolicySet, Rule
from vaultkey.policy.parse import check_policy_text, parse_policy

PAYMENTS = """\
group = "payments"
recipients = ["payments.pub"]

[[rules]]
prefix = "/payments"
allow = ["read", "list", "write", "delete", "watch"]

[[rules]]
prefix = "/payments/ledger/"
deny = ["write", "delete"]

[[rules]]
prefix = "/payments/ledger/drafts/"
allow = ["write"]

[[rules]]
key = "/payments/ledger/drafts/locked"
deny = ["write"]

[[rules]]
prefix = "/shared/"
allow = ["read", "list", "watch"]

[[rules]]
prefix = "/shared/secrets/"
deny = ["read"]

[[rules]]
prefix = "/services/+/config/"
allow = ["read"]

[[rules]]
prefix = "/services/billing/config/"
deny = ["read"]
"""

WEB = """\
group = "web"
recipients = ["web.pub"]

[[rules]]
prefix = "/web/"
allow = ["read", "list", "write", "delete", "watch"]

[[rules]]
prefix = "/web/+/archive/"
deny = ["write", "delete"]

[[rules]]
prefix = "/web/assets/+/"
allow = ["delete"]

[[rules]]
prefix = "/shared/"
allow = ["read", "list", "watch"]

[[rules]]
prefix = "/services/+/config/"
allow = ["read", "list"]

[[rules]]
key = "/services/+/config/tls-key"
deny = ["read"]

[[rules]]
key = "/payments/status"
allow = ["read"]
"""

AUDIT = """\
group = "audit"

[[rules]]
prefix = "/"
allow = ["list"]
"""


@pytest.fixture(scope="module")
def acl() -> PolicySet:
    return PolicySet([parse_policy(PAYMENTS, "payments.toml"), parse_policy(WEB, "web.toml"),
                      parse_policy(AUDIT, "audit.toml")])


P, W, A = "payments", "web", "audit"
CASES = [
    # prefix rules cover everything below them, and the prefix itself
    (P, "/payments/db/password", "read", False, True),
    (P, "/payments/db/password", "write", False, True),
    (P, "/payments/db/password", "delete", False, True),
    (P, "/payments/db/password", "watch", False, True),
    (P, "/payments", "read", False, True),
    (P, "/payments/", "list", True, True),
    # sibling prefixes share a string prefix but not a segment
    (P, "/payments2/x", "read", False, False),
    (P, "/payments2/", "list", True, False),
    (W, "/webx/a", "read", False, False),
    # longer-prefix deny beats shorter allow
    (P, "/payments/ledger/2024", "read", False, True),
    (P, "/payments/ledger/2024", "write", False, False),
    (P, "/payments/ledger/2024", "delete", False, False),
    (P, "/payments/ledger/", "list", True, True),
    (P, "/shared/secrets/root", "read", False, False),
    (P, "/shared/secrets/", "list", True, True),
    # longer-prefix allow beats shorter deny
    (P, "/payments/ledger/drafts/d1", "write", False, True),
    (P, "/payments/ledger/drafts/d1", "delete", False, False),
    # an exact key beats any prefix, but only for exactly that key
    (P, "/payments/ledger/drafts/locked", "write", False, False),
    (P, "/payments/ledger/drafts/locked", "read", False, True),
    (P, "/payments/ledger/drafts/locked/sub", "write", False, True),
    # capabilities no rule names are denied by default
    (P, "/shared/tls/ca", "read", False, True),
    (P, "/shared/tls/ca", "write", False, False),
    (P, "/web/index", "read", False, False),
    (P, "/", "list", True, False),
    (P, "/shared", "list", True, True),
    # '+' matches exactly one segment; more literal segments win
    (P, "/services/payments/config/db", "read", False, True),
    (P, "/services/payments/config", "read", False, True),
    (P, "/services/payments/db/config", "read", False, False),
    (P, "/services/config", "read", False, False),
    (P, "/services/billing/config/db", "read", False, False),
    (W, "/services/billing/config/db", "read", False, True),
    (W, "/services/payments/config/", "list", True, True),
    (W, "/services/payments/config/db", "write", False, False),
    # key rules may use '+' too, and beat the prefix they sit under
    (W, "/services/payments/config/tls-key", "read", False, False),
    (W, "/services/web/config/tls-key", "read", False, False),
    (W, "/services/web/config/tls-key/old", "read", False, True),
    (W, "/services/web/config/tls-key", "list", False, True),  # the key rule names only read
    # deny beats allow at equal specificity (/web/+/archive/ vs /web/assets/+/)
    (W, "/web/assets/archive/old", "delete", False, False),
    (W, "/web/assets/img/logo", "delete", False, True),
    (W, "/web/old/archive/x", "delete", False, False),
    (W, "/web/old/archive/x", "write", False, False),
    (W, "/web/assets/archive/old", "write", False, False),
    (W, "/web/assets/archive/old", "read", False, True),
    (W, "/web/old/archive/", "list", True, True),
    (W, "/web/index.html", "write", False, True),
    # the same path, different groups
    (W, "/shared/secrets/root", "read", False, True),
    (W, "/payments/ledger/2024", "read", False, False),
    # key rules never cover prefix targets, nor other capabilities
    (W, "/payments/status", "read", False, True),
    (W, "/payments/status/", "read", True, False),
    (W, "/payments/status/", "list", True, False),
    (W, "/payments/status", "list", False, False),
    (W, "/payments/other", "read", False, False),
    # the root prefix covers everything, including "/" itself
    (A, "/", "list", True, True),
    (A, "/anything/below/", "list", True, True),
    (A, "/payments/x", "read", False, False),
    # unknown groups are denied everything
    ("nobody", "/payments/x", "read", False, False),
    ("nobody", "/", "list", True, False),
]


@pytest.mark.parametrize(("group", "path", "cap", "is_prefix", "expected"), CASES)
def test_decision_matches_the_documented_semantics(
    acl: PolicySet, group: str, path: str, cap: str, is_prefix: bool, expected: bool
) -> None:
    decision = acl.decide(group, path, cap, is_prefix=is_prefix)
    assert decision.allowed is expected, decision.explain()
    assert acl.allowed(group, path, cap, is_prefix=is_prefix) is expected


def test_decision_names_the_deciding_rule_with_file_and_line(acl: PolicySet) -> None:
    decision = acl.decide(P, "/payments/ledger/x", Capability.WRITE)
    assert decision.rule is not None
    assert (decision.rule.source, decision.rule.line) == ("payments.toml", 8)
    assert str(decision) == (
        "deny: payments.toml:8 prefix /payments/ledger/ denies write on /payments/ledger/x")
    allow = acl.decide(P, "/payments/x", "read")
    assert allow.explain() == "allow: payments.toml:4 prefix /payments/ allows read on /payments/x"


@pytest.mark.parametrize(
    ("group", "path", "expected"),
    [
        (P, "/x", "deny: no rule in group 'payments' grants 'write' on /x (default deny)"),
        ("nobody", "/x", "deny: unknown group 'nobody' (default deny)"),
    ],
)
def test_default_deny_is_explained(acl: PolicySet, group: str, path: str, expected: str) -> None:
    decision = acl.decide(group, path, "write")
    assert decision.rule is None
    assert not decision.allowed
    assert decision.explain() == expected


def test_decide_rejects_an_unknown_capability_name(acl: PolicySet) -> None:
    with pytest.raises(ValueError, match="fly"):
        acl.decide(P, "/payments/x", "fly")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/shared/tls/ca", ["payments", "web"]),
        ("/shared/secrets/root", ["web"]),
        ("/payments/status", ["payments", "web"]),
        ("/web/index.html", ["web"]),
        ("/elsewhere/x", []),
    ],
)
def test_readers_are_the_sorted_groups_allowed_to_read(
    acl: PolicySet, path: str, expected: list[str]
) -> None:
    assert acl.readers(path) == expected


def test_policy_set_exposes_groups_and_policies(acl: PolicySet) -> None:
    assert sorted(acl.groups) == ["audit", "payments", "web"]
    assert acl.groups["web"].recipients == ("web.pub",)
    assert acl.groups["payments"].may_read
    assert not acl.groups["audit"].may_read
    with pytest.raises(KeyError):
        acl.groups["nobody"]


def test_duplicate_groups_name_both_files() -> None:
    first = parse_policy(PAYMENTS, "a.toml")
    second = parse_policy("# copy\n" + PAYMENTS, "b.toml")
    with pytest.raises(PolicyError) as info:
        PolicySet([first, second])
    assert "a.toml" in info.value.reason and "b.toml" in info.value.reason
    assert (info.value.source, info.value.line) == ("b.toml", 2)


@pytest.mark.parametrize(
    ("path", "is_prefix", "expected"),
    [
        ("/a/b/c", False, (1, 3, 3)),
        ("/a/+/c", False, (1, 3, 2)),
        ("/a/b/c/", True, (0, 3, 3)),
        ("/+/+/", True, (0, 2, 0)),
        ("/", True, (0, 0, 0)),
    ],
)
def test_specificity_is_key_then_length_then_literals(
    path: str, is_prefix: bool, expected: tuple[int, int, int]
) -> None:
    assert Rule(path, is_prefix, allow=frozenset({Capability.READ})).specificity == expected


def test_prefix_with_and_without_trailing_slash_is_the_same_rule() -> None:
    policy = parse_policy('group = "g"\n[[rules]]\nprefix = "/a"\nallow = ["read"]\n')
    assert policy.rules[0].path == "/a/"
    acl = PolicySet([policy])
    assert acl.allowed("g", "/a/x", "read") and not acl.allowed("g", "/ab/x", "read")


def test_a_valid_policy_keeps_every_field() -> None:
    text = (
        'group = "ops.team-1"\ndescription = "d"\nrecipients = ["a.pub", "vkpub1_x"]\n'
        '[[rules]]\nkey = "/a/b"\nallow = ["read", "watch"]\ndeny = ["write"]\n'
        'comment = "c"\n'
    )
    policy = parse_policy(text, "ops.toml")
    assert policy == Policy(
        group="ops.team-1", description="d", recipients=("a.pub", "vkpub1_x"),
        source="ops.toml", group_line=1, recipients_line=3, recipient_lines=(3, 3),
        rules=(Rule("/a/b", False, frozenset({Capability.READ, Capability.WATCH}),
                    frozenset({Capability.WRITE}), "c", "ops.toml", 4),),
    )


RULE_HEAD = 'group = "g"\nrecipients = []\n\n[[rules]]\n'
ERROR_CASES = [
    ("unknown_top_field", 'group = "g"\ncolour = "blue"\n', 2, "unknown field 'colour'"),
    ("unknown_top_table", 'group = "g"\n[extra]\nx = 1\n', 2, "unknown field 'extra'"),
    ("unknown_rule_field", RULE_HEAD + 'prefix = "/a/"\nprefx = "/b/"\nallow = ["read"]\n',
     6, "rule #1: unknown field 'prefx'"),
    ("bad_capability", RULE_HEAD + 'prefix = "/a/"\nallow = ["read", "reed"]\n', 6,
     "unknown capability 'reed' in 'allow' (valid: read, list, write, delete, watch)"),
    ("dotdot_segment", RULE_HEAD + 'allow = ["read"]\nprefix = "/a/../b/"\n', 6, "'..' segment"),
    ("relative_path", RULE_HEAD + 'key = "a/b"\nallow = ["read"]\n', 5, "must be absolute"),
    ("key_ending_in_slash", RULE_HEAD + 'key = "/a/"\nallow = ["read"]\n', 5, "prefix ="),
    ("prefix_and_key", RULE_HEAD + 'prefix = "/a/"\nkey = "/a/b"\nallow = ["read"]\n', 6,
     "has both 'prefix' and 'key'"),
    ("neither_prefix_nor_key", RULE_HEAD + 'allow = ["read"]\n', 4, "needs 'prefix' or 'key'"),
    ("no_allow_or_deny", RULE_HEAD + 'prefix = "/a/"\ncomment = "x"\n', 4,
     "needs 'allow', 'deny' or 'require_signature'"),
    ("empty_allow", RULE_HEAD + 'prefix = "/a/"\nallow = []\n', 6, "non-empty array"),
    ("cap_allowed_and_denied", RULE_HEAD + 'prefix = "/a/"\nallow = ["read", "list"]\n'
     'deny = ["list"]\n', 7, "list both allowed and denied"),
    ("path_not_a_string", RULE_HEAD + 'prefix = 3\nallow = ["read"]\n', 5,
     "'prefix' must be a string, not integer"),
    ("comment_not_a_string", RULE_HEAD + 'prefix = "/a/"\nallow = ["read"]\ncomment = 1\n', 7,
     "'comment' must be a string"),
    ("description_not_a_string", 'group = "g"\n\ndescription = 3\n', 3,
     "'description' must be a string, not integer"),
    ("recipients_not_an_array", 'group = "g"\nrecipients = "a.pub"\n', 2,
     "'recipients' must be an array"),
    ("rules_not_tables", 'group = "g"\nrules = ["x"]\n', 2, "array of tables"),
    ("bad_group_name", '\ngroup = "Payments"\n', 2, "group name 'Payments' is invalid"),
    ("group_not_a_string", "group = 7\n", 1, "'group' must be a string, not integer"),
    ("missing_group", "recipients = []\n", None, "missing required field 'group'"),
    ("second_rule_reports_its_own_header",
     RULE_HEAD + 'prefix = "/a/"\nallow = ["read"]\n\n[[rules]]\ndeny = ["read"]\n', 8,
     "rule #2: needs 'prefix' or 'key'"),
    ("inline_rules_fall_back_to_rules_line",
     'group = "g"\nrules = [\n  { allow = ["read"] },\n]\n', 2, "rule #1: needs 'prefix'"),
    ("toml_syntax_error", 'group = "g"\n\n[[rules]\nprefix = "/a/"\n', 3, "TOML syntax error"),
    ("toml_error_at_end", 'group = "g"\ndescription = "x', 2, "Unterminated string"),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_parse_errors_report_file_and_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "bad.toml")
    assert info.value.source == "bad.toml"
    assert info.value.line == line, info.value.message
    assert fragment in info.value.reason
    expected_where = "bad.toml" if line is None else f"bad.toml:{line}"
    assert str(info.value).startswith(expected_where + ": ")


def test_all_problems_in_one_file_are_collected() -> None:
    text = RULE_HEAD + 'prefix = "/a/"\nallow = ["fly"]\ncolour = 1\n\n[[rules]]\nkey = "b"\n'
    policy, errors = check_policy_text(text, "bad.toml")
    assert policy is None
    assert [e.line for e in errors] == [6, 7, 9, 10]


def test_a_clean_file_has_no_problems() -> None:
    policy, errors = check_policy_text(WEB, "web.toml")
    assert errors == [] and policy is not None and policy.group == "web"


def test_list_on_a_key_rule_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="never applies") as info:
        parse_policy('group = "g"\n[[rules]]\nkey = "/a/b"\nallow = ["list"]\n', "g.toml")
    assert info.value.line == 3
