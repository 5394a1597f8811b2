"""Writer signatures in policies: ``signers``, ``require_signature`` and the proxy's check.

Run: ``pytest -q tests/unit/test_policy_signatures.py``. A policy lists its group's
writers and rules say where their signature is required::

    group = "release"
    signers = ["ci.sigpub"]
    [[rules]]
    prefix = "/app/"
    require_signature = ["group:release", "ops.sigpub", "vksigpub1_..."]

:func:`~vaultkey.policy.load.load_policy_dir` resolves each rule's writers, and
:func:`~vaultkey.proxy.authz.check_envelope` refuses a write they did not sign.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaultkey.crypto import SecretKey, encrypt
from vaultkey.errors import MalformedEnvelope, PolicyError, SignatureRequired
from vaultkey.keys import PublicKey, SigningPublicKey
from vaultkey.policy.engine import PolicySet
from vaultkey.policy.load import check_policy_dir, load_policy_dir
from vaultkey.policy.parse import check_policy_text, parse_policy
from vaultkey.proxy.audit import AuditRecord
from vaultkey.proxy.authz import Authz, Recipients, check_envelope
from vaultkey.signatures import Writers
from vaultkey.signkey import SigningKey, write_signing_keypair

RELEASE = 'group = "release"\nsigners = ["ci.sigpub"]\n'


def write_sigpub(directory: Path, name: str) -> SigningKey:
    key = SigningKey.generate()
    (directory / f"{name}.sigpub").write_text(key.public.to_file_text(comment=name))
    return key


def names(writers: Writers | None) -> list[str] | None:
    return None if writers is None else writers.names()


def load_problem(directory: Path) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load_policy_dir(directory)
    return info.value


# --- parsing --------------------------------------------------------------------------------

def test_signers_and_require_signature_are_parsed_with_their_lines() -> None:
    text = ('group = "release"\n'
            'signers = ["ci.sigpub", " vksigpub1_x "]\n'
            '[[rules]]\n'
            'prefix = "/app/"\n'
            'allow = ["write"]\n'
            'require_signature = ["group:release", "ops.sigpub"]\n')
    policy = parse_policy(text, "release.toml")
    assert policy.signers == ("ci.sigpub", "vksigpub1_x")  # entries are stripped
    assert policy.signers_line == 2
    [rule] = policy.rules
    assert rule.require_signature == ("group:release", "ops.sigpub")
    assert (rule.where, rule.allow) == ("release.toml:3", frozenset({"write"}))


def test_a_rule_may_only_require_a_signature() -> None:
    policy = parse_policy('group = "audit"\n[[rules]]\nprefix = "/app/"\n'
                          'require_signature = ["group:release"]\n', "audit.toml")
    [rule] = policy.rules
    assert (rule.allow, rule.deny) == (frozenset(), frozenset())
    assert not policy.may_read  # so the group needs no recipients
    acl = PolicySet([policy])
    assert not any(acl.allowed("audit", "/app/x", cap)
                   for cap in ("read", "write", "list", "delete", "watch"))
    found = acl.signature_rule("/app/x")
    assert found is not None and found.entries == ("group:release",)


def test_a_policy_without_signatures_has_none() -> None:
    policy = parse_policy('group = "g"\n[[rules]]\nprefix = "/g/"\nallow = ["write"]\n')
    assert (policy.signers, policy.rules[0].require_signature) == ((), ())
    assert PolicySet([policy]).signature_rule("/g/x") is None


RULE = 'group = "g"\n\n[[rules]]\nprefix = "/a/"\n'


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (RULE + "require_signature = []\n", 5, "'require_signature' must name at least one"),
        (RULE + 'require_signature = ["group:g", 3]\n', 5,
         "'require_signature' must be an array of non-empty strings"),
        (RULE + 'require_signature = ["  "]\n', 5, "must be an array of non-empty strings"),
        (RULE + 'require_signature = "group:g"\n', 5, "must be an array of non-empty strings"),
        (RULE + 'require_signature = ["group:"]\n', 5, "'group:' is not a valid group name"),
        (RULE + 'require_signature = ["group:Release"]\n', 5,
         "'group:Release' is not a valid group name"),
        (RULE + 'allow = ["read"]\nrequire_signature = ["group:a b"]\n', 6,
         "'group:a b' is not a valid group name"),
        ('group = "g"\nsigners = "ci.sigpub"\n', 2,
         "field 'signers' must be an array of non-empty strings"),
        ('group = "g"\n\nsigners = [1]\n', 3, "field 'signers' must be an array"),
        (RULE + 'allow = ["read"]\nrequire_signatures = ["group:g"]\n', 6,
         "unknown field 'require_signatures'"),
        (RULE + 'comment = "only a comment"\n', 3,
         "needs 'allow', 'deny' or 'require_signature'"),
    ],
    ids=["empty", "non_string_entry", "blank_entry", "not_an_array", "group_without_name",
         "group_name_uppercase", "group_name_with_space", "signers_not_an_array",
         "signers_non_string", "misspelt_field", "no_effect_at_all"],
)
def test_signature_field_errors_report_file_and_line(text: str, line: int, fragment: str) -> None:
    policy, errors = check_policy_text(text, "g.toml")
    assert policy is None
    assert [(e.source, e.line) for e in errors] == [("g.toml", line)], errors
    assert fragment in errors[0].reason
    assert str(errors[0]).startswith(f"g.toml:{line}: ")


# --- PolicySet.signature_rule ---------------------------------------------------------------

SPECIFIC = """group = "g"
[[rules]]
prefix = "/app/"
require_signature = ["group:dev"]
[[rules]]
prefix = "/app/prod/"
require_signature = ["group:release"]
[[rules]]
key = "/app/prod/root"
require_signature = ["root.sigpub"]
[[rules]]
prefix = "/app/prod/root/"
require_signature = ["group:ops"]
[[rules]]
prefix = "/+/shared/"
require_signature = ["group:shared"]
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/app/x", ("group:dev",)),
        ("/app/prod/x", ("group:release",)),  # the deeper prefix beats the shallower
        ("/app/prod/a/b/c", ("group:release",)),
        ("/app/prod", ("group:release",)),  # a prefix covers the key named like it
        ("/app/prod/root", ("root.sigpub",)),  # a key rule beats an equally deep prefix
        ("/app/prod/root/x", ("group:ops",)),
        ("/app/shared/x", ("group:shared",)),  # deeper (through a wildcard) beats /app/
        ("/web/shared/x", ("group:shared",)),
        ("/web/x", None),
        ("/application/x", None),
    ],
)
def test_signature_rule_is_the_most_specific_requirement(
    path: str, expected: tuple[str, ...] | None
) -> None:
    found = PolicySet([parse_policy(SPECIFIC, "g.toml")]).signature_rule(path)
    assert (None if found is None else found.entries) == expected


def test_rules_with_the_same_pattern_in_two_files_are_combined() -> None:
    a = parse_policy('group = "a"\n[[rules]]\nprefix = "/app"\nrequire_signature = '
                     '["group:a", "x.sigpub"]\n', "a.toml")
    b = parse_policy('group = "b"\n\n[[rules]]\nprefix = "/app/"\nallow = ["read"]\n'
                     'require_signature = ["x.sigpub", "group:b"]\n'
                     '[[rules]]\nkey = "/app"\nrequire_signature = ["group:b"]\n', "b.toml")
    acl = PolicySet([a, b])
    found = acl.signature_rule("/app/db")
    assert found is not None
    assert (found.path, found.is_prefix) == ("/app/", True)
    assert found.entries == ("group:a", "x.sigpub", "group:b")  # union, first seen first
    assert [r.where for r in found.rules] == ["a.toml:2", "b.toml:3"]
    assert found.describe() == ("prefix /app/ requires a signature by group:a, x.sigpub, "
                                "group:b (a.toml:2, b.toml:3)")
    key_rule = acl.signature_rule("/app")  # the key rule is a different pattern
    assert key_rule is not None and key_rule.entries == ("group:b",)
    assert len(acl.signature_rules) == 2


# --- loading: signers and resolved writers --------------------------------------------------

def test_signers_resolve_files_and_inline_keys(tmp_path: Path) -> None:
    ci = write_sigpub(tmp_path, "ci")
    (tmp_path / "keys").mkdir()
    _, nightly_file = write_signing_keypair(tmp_path / "keys" / "nightly")
    nightly = SigningPublicKey.load(nightly_file)
    inline = SigningKey.generate().public
    (tmp_path / "release.toml").write_text(
        f'group = "release"\nsigners = ["ci.sigpub", "keys/nightly.sigpub", '
        f'"{inline.to_text()}"]\n')
    loaded = load_policy_dir(tmp_path)
    assert loaded.signers["release"] == (("ci", ci.public), ("nightly", nightly),
                                         (inline.key_id, inline))
    assert loaded.writers_for("/anything") is None  # signers alone require nothing
    assert check_policy_dir(tmp_path) == []


def test_writers_for_returns_the_resolved_writers_of_the_most_specific_rule(
    tmp_path: Path
) -> None:
    ci = write_sigpub(tmp_path, "ci")
    ops = write_sigpub(tmp_path, "ops")
    inline = SigningKey.generate().public
    (tmp_path / "release.toml").write_text(
        RELEASE + '[[rules]]\nprefix = "/app/"\nrequire_signature = ["group:release"]\n'
        f'[[rules]]\nprefix = "/app/prod/"\nrequire_signature = ["ops.sigpub", '
        f'"{inline.to_text()}"]\n')
    loaded = load_policy_dir(tmp_path)
    writers = loaded.writers_for("/app/db")
    assert writers is not None
    assert writers.keys == {ci.public.kid: ("ci", ci.public)}
    writers = loaded.writers_for("/app/prod/db")
    assert writers is not None
    assert writers.keys == {ops.public.kid: ("ops", ops.public),
                            inline.kid: (inline.key_id, inline)}
    assert writers.names() == sorted(["ops", inline.key_id])
    assert loaded.writers_for("/web/x") is None


def test_a_group_entry_names_another_groups_signers(tmp_path: Path) -> None:
    ci = write_sigpub(tmp_path, "ci")
    write_sigpub(tmp_path, "web-deploy")
    (tmp_path / "release.toml").write_text(RELEASE)
    (tmp_path / "web.toml").write_text(
        'group = "web"\nsigners = ["web-deploy.sigpub"]\n[[rules]]\nprefix = "/web/"\n'
        'allow = ["write"]\nrequire_signature = ["group:release"]\n')
    writers = load_policy_dir(tmp_path).writers_for("/web/index")
    assert writers is not None
    assert writers.names() == ["ci"]  # release's signers, not web's own
    assert ci.public.kid in writers.keys


def test_the_same_pattern_in_two_files_accepts_the_writers_of_both(tmp_path: Path) -> None:
    ci = write_sigpub(tmp_path, "ci")
    ops = write_sigpub(tmp_path, "ops")
    (tmp_path / "release.toml").write_text(
        RELEASE + '[[rules]]\nprefix = "/shared/"\nrequire_signature = ["group:release"]\n')
    (tmp_path / "ops.toml").write_text(
        'group = "ops"\nsigners = ["ops.sigpub"]\n[[rules]]\nprefix = "/shared"\n'
        'require_signature = ["group:ops"]\n')
    writers = load_policy_dir(tmp_path).writers_for("/shared/tls/ca")
    assert writers is not None
    assert writers.names() == ["ci", "ops"]
    assert set(writers.keys) == {ci.public.kid, ops.public.kid}


def test_one_key_listed_twice_is_one_writer(tmp_path: Path) -> None:
    ci = write_sigpub(tmp_path, "ci")
    (tmp_path / "release.toml").write_text(
        RELEASE + '[[rules]]\nprefix = "/app/"\nrequire_signature = ["group:release", '
        f'"ci.sigpub", "{ci.public.to_text()}"]\n')
    writers = load_policy_dir(tmp_path).writers_for("/app/x")
    assert writers is not None
    assert writers.keys == {ci.public.kid: ("ci", ci.public)}  # the first name is kept


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('group = "g"\n[[rules]]\nprefix = "/a/"\nrequire_signature = ["group:nobody"]\n', 2,
         "require_signature: unknown group 'nobody'"),
        ('group = "g"\n[[rules]]\nprefix = "/a/"\nrequire_signature = ["group:g"]\n', 2,
         "require_signature: group 'g' lists no signers"),
        ('group = "g"\nsigners = []\n\n[[rules]]\nkey = "/a"\nrequire_signature = ["group:g"]\n',
         4, "require_signature: group 'g' lists no signers"),
        ('group = "g"\n[[rules]]\nprefix = "/a/"\nrequire_signature = ["gone.sigpub"]\n', 2,
         "require_signature 'gone.sigpub': cannot read public signing key file"),
        ('group = "g"\n\nsigners = ["ci.sigpub", "gone.sigpub"]\n', 3,
         "signer 'gone.sigpub': cannot read public signing key file"),
        ('group = "g"\nsigners = ["reader.pub"]\n', 2,
         "signer 'reader.pub': this is a public key, but a public signing key is needed"),
        ('group = "g"\nsigners = ["{recipient}"]\n', 2,
         "this is a public key, but a public signing key is needed"),
        ('group = "g"\n[[rules]]\nprefix = "/a/"\nrequire_signature = ["{recipient}"]\n', 2,
         "this is a public key, but a public signing key is needed"),
        ('group = "g"\nsigners = ["{truncated}"]\n', 2, "wrong length"),
    ],
    ids=["unknown_group", "group_without_signers", "group_with_empty_signers",
         "unreadable_required_file", "unreadable_signer_file", "recipient_file_as_signer",
         "inline_recipient_key_as_signer", "inline_recipient_key_required", "truncated_inline"],
)
def test_signer_problems_report_the_policy_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    write_sigpub(tmp_path, "ci")
    (tmp_path / "reader.pub").write_text(PublicKey(os.urandom(32)).to_file_text())
    recipient = PublicKey(os.urandom(32)).to_text()
    truncated = SigningKey.generate().public.to_text()[:-3]
    (tmp_path / "g.toml").write_text(text.format(recipient=recipient, truncated=truncated))
    problem = load_problem(tmp_path)
    assert (problem.source, problem.line) == ("g.toml", line), problem.message
    assert fragment in problem.reason
    assert recipient not in problem.message  # key text is never echoed
    assert [(p.source, p.line) for p in check_policy_dir(tmp_path)] == [("g.toml", line)]


def test_a_pasted_secret_signing_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = SigningKey.generate().to_text()
    (tmp_path / "g.toml").write_text(f'group = "g"\nsigners = ["{secret}"]\n')
    problem = load_problem(tmp_path)
    assert (problem.source, problem.line) == ("g.toml", 2)
    assert "this is a secret signing key, but a public signing key is needed" in problem.reason
    assert secret not in str(problem)
    assert secret[len("vksigsec1_"):][:8] not in str(problem)


def test_every_signature_problem_is_collected(tmp_path: Path) -> None:
    write_sigpub(tmp_path, "ci")
    (tmp_path / "a.toml").write_text(
        'group = "a"\nsigners = ["gone.sigpub"]\n[[rules]]\nprefix = "/a/"\n'
        'require_signature = ["group:nobody", "also-gone.sigpub"]\n')
    (tmp_path / "b.toml").write_text('group = "b"\n[[rules]]\nprefix = "/b/"\n'
                                     'require_signature = []\n')
    found = sorted((p.source, p.line, p.reason.split(":")[0]) for p in check_policy_dir(tmp_path))
    assert found == [("a.toml", 2, "signer 'gone.sigpub'"),
                     ("a.toml", 3, "require_signature"),
                     ("a.toml", 3, "require_signature 'also-gone.sigpub'"),
                     ("b.toml", 4, "rule #1")]


# --- the proxy's write-time check -----------------------------------------------------------

PATH = "/app/release/token"


@pytest.fixture(scope="module")
def reader() -> SecretKey:
    return SecretKey.generate()


@pytest.fixture(scope="module")
def ci() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def mallory() -> SigningKey:
    return SigningKey.generate()


def _recipients(reader: SecretKey, writers: Writers | None) -> Recipients:
    return Recipients(PATH, (("ops", (reader.public,)),), (), writers)


def test_signature_required_is_a_422_with_its_own_code() -> None:
    assert issubclass(SignatureRequired, MalformedEnvelope)
    assert (SignatureRequired.http_status, SignatureRequired.code) == (422,
                                                                      "signature_required")


def test_a_correctly_signed_envelope_is_accepted(reader, ci, mallory) -> None:
    body = encrypt(b"v1.2.3", PATH, [reader.public], counter=4, signer=ci)
    writers = Writers.of([("mallory", mallory.public), ("ci", ci.public)])
    env = check_envelope(body, _recipients(reader, writers))
    assert env.signature is not None and env.signature.signer_kid == ci.public.kid
    assert env.counter == 4


def test_no_requirement_accepts_signed_and_unsigned_envelopes(reader, mallory) -> None:
    for signer in (None, mallory):
        body = encrypt(b"v", PATH, [reader.public], signer=signer)
        check_envelope(body, _recipients(reader, None))


def test_an_unsigned_envelope_is_refused_where_a_signature_is_required(reader, ci) -> None:
    body = encrypt(b"v1.2.3", PATH, [reader.public])
    with pytest.raises(SignatureRequired) as info:
        check_envelope(body, _recipients(reader, Writers.of([("ci", ci.public)])))
    assert "not signed" in info.value.message
    assert info.value.message.endswith("writers accepted here: ci")
    assert (info.value.http_status, info.value.code) == (422, "signature_required")


def test_an_envelope_signed_by_another_writer_is_refused(reader, ci, mallory) -> None:
    body = encrypt(b"v1.2.3", PATH, [reader.public], signer=mallory)
    with pytest.raises(SignatureRequired) as info:
        check_envelope(body, _recipients(reader, Writers.of([("ci", ci.public)])))
    assert mallory.key_id in info.value.message
    assert "not a trusted writer for this path" in info.value.message


def test_a_signature_that_does_not_verify_is_refused(reader, ci) -> None:
    body = bytearray(encrypt(b"v1.2.3", PATH, [reader.public], signer=ci))
    body[-1] ^= 0x01  # the last byte of the Ed25519 signature
    with pytest.raises(SignatureRequired, match="does not verify"):
        check_envelope(bytes(body), _recipients(reader, Writers.of([("ci", ci.public)])))


def test_a_signature_by_a_trusted_writer_over_another_path_is_refused(reader, ci) -> None:
    body = encrypt(b"v1.2.3", "/app/other", [reader.public], signer=ci)
    with pytest.raises(MalformedEnvelope, match="bound to '/app/other'"):
        check_envelope(body, _recipients(reader, Writers.of([("ci", ci.public)])))


def test_recipients_for_carries_the_policy_writers(tmp_path: Path, reader, ci,
                                                   mallory) -> None:
    (tmp_path / "ci.sigpub").write_text(ci.public.to_file_text("ci"))
    (tmp_path / "ops.pub").write_text(reader.public.to_file_text("ops"))
    (tmp_path / "ops.toml").write_text(
        'group = "ops"\nrecipients = ["ops.pub"]\nsigners = ["ci.sigpub"]\n'
        '[[rules]]\nprefix = "/app/"\nallow = ["read", "write"]\n'
        '[[rules]]\nprefix = "/app/release/"\nrequire_signature = ["group:ops"]\n')
    authz = Authz(load_policy_dir(tmp_path), (), "ops", AuditRecord())
    assert authz.recipients_for("/app/db").writers is None
    recipients = authz.recipients_for(PATH)
    assert recipients.groups == (("ops", (reader.public,)),)
    assert names(recipients.writers) == ["ci"]
    check_envelope(encrypt(b"v", PATH, [reader.public], signer=ci), recipients)
    for signer in (None, mallory):
        with pytest.raises(SignatureRequired):
            check_envelope(encrypt(b"v", PATH, [reader.public], signer=signer), recipients)
