"""Tests of vaultkey.policy.load: reading a policy directory and its recipient keys.

Run: ``pytest -q tests/unit/test_policyload.py``. The example policies in
``policies/`` are copied into ``tmp_path`` next to freshly generated ``.pub``
files::

    loaded = load_policy_dir(tmp_path)
    loaded.policy_set.readers("/shared/x")   # ['payments', 'web']
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vaultkey.errors import PolicyError
from vaultkey.keys import PublicKey
from vaultkey.policy.load import PolicyDirError, check_policy_dir, load_policy_dir

EXAMPLES = Path(__file__).resolve().parents[2] / "policies"
OPS = 'group = "ops"\nrecipients = ["ops.pub"]\n[[rules]]\nprefix = "/ops/"\nallow = ["read"]\n'


def new_key() -> PublicKey:
    return PublicKey(os.urandom(32))


def write_key(directory: Path, name: str) -> PublicKey:
    key = new_key()
    (directory / name).write_text(key.to_file_text(comment=name))
    return key


@pytest.fixture
def examples(tmp_path: Path) -> dict[str, PublicKey]:
    for name in ("payments.toml", "shared.toml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    return {"payments": write_key(tmp_path, "payments.pub"), "web": write_key(tmp_path, "web.pub")}


def test_example_policies_load_with_their_recipients(
    tmp_path: Path, examples: dict[str, PublicKey]
) -> None:
    loaded = load_policy_dir(tmp_path)
    assert sorted(loaded.policy_set.groups) == ["payments", "web"]
    assert loaded.recipients_for("payments") == (examples["payments"],)
    assert loaded.recipients_for("web") == (examples["web"],)
    assert loaded.recipients_for("nobody") == ()
    assert check_policy_dir(tmp_path) == []


@pytest.mark.parametrize(
    ("group", "path", "cap", "expected"),
    [
        ("payments", "/payments/db/password", "write", True),
        ("payments", "/payments/ledger/2024", "read", True),
        ("payments", "/payments/ledger/2024", "write", False),
        ("payments", "/payments/ledger/2024", "delete", False),
        ("payments", "/shared/tls/ca", "read", True),
        ("payments", "/shared/tls/ca", "write", False),
        ("payments", "/payments2/x", "read", False),
        ("web", "/web/index", "delete", True),
        ("web", "/shared/tls/ca", "watch", True),
        ("web", "/services/payments/config/timeout", "read", True),
        ("web", "/services/payments/config/signing-key", "read", False),
        ("web", "/services/payments/secrets/db", "read", False),
        ("web", "/payments/db/password", "read", False),
    ],
)
def test_example_policies_mean_what_their_comments_say(
    tmp_path: Path, examples: dict[str, PublicKey], group: str, path: str, cap: str,
    expected: bool
) -> None:
    assert load_policy_dir(tmp_path).policy_set.allowed(group, path, cap) is expected


def test_recipients_of_a_path_are_its_reader_groups_keys(
    tmp_path: Path, examples: dict[str, PublicKey]
) -> None:
    from vaultkey.proxy.audit import AuditRecord
    from vaultkey.proxy.authz import Authz

    authz = Authz(load_policy_dir(tmp_path), (), "web", AuditRecord())
    found = authz.recipients_for("/shared/x")
    assert found.groups == (("payments", (examples["payments"],)), ("web", (examples["web"],)))
    assert authz.recipients_for("/web/x").groups == (("web", (examples["web"],)),)
    assert authz.recipients_for("/nowhere").groups == ()


def test_inline_recipient_keys_are_parsed_and_deduplicated(tmp_path: Path) -> None:
    key = write_key(tmp_path, "ops.pub")
    entries = f'["ops.pub", "{key.to_text()}"]'
    (tmp_path / "ops.toml").write_text(OPS.replace('["ops.pub"]', entries))
    assert load_policy_dir(tmp_path).recipients_for("ops") == (key,)


def test_a_group_without_read_rights_needs_no_recipients(tmp_path: Path) -> None:
    (tmp_path / "audit.toml").write_text('group = "audit"\n[[rules]]\nprefix = "/"\n'
                                         'allow = ["list", "watch"]\n')
    assert load_policy_dir(tmp_path).recipients_for("audit") == ()


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (OPS, 2, "recipient 'ops.pub': "),
        (OPS.replace("ops.pub", "../elsewhere/ops.pub"), 2, "cannot read public key file"),
        (f'group = "ops"\nrecipients = ["{new_key().to_text()[:-2]}"]\n', 2, "recipient 'vkpub1_"),
        ('group = "ops"\nrecipients = [\n  "vkpub1_AAAA",\n]\n', 3, "wrong length"),
        ('group = "ops"\nrecipients = [\n  "a.pub",\n  "nope.pub",\n]\n', 4,
         "recipient 'nope.pub': cannot read public key file"),
        ('group = "ops"\n[[rules]]\nkey = "/k"\nallow = ["read"]\n', 1,
         "group 'ops' may read but has no recipients"),
        ('group = "ops"\nrecipients = []\n[[rules]]\nkey = "/k"\nallow = ["read"]\n', 2,
         "group 'ops' may read but has no recipients"),
    ],
)
def test_recipient_problems_report_the_policy_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    write_key(tmp_path, "a.pub")
    (tmp_path / "ops.toml").write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path)
    assert (info.value.source, info.value.line) == ("ops.toml", line), info.value.message
    assert fragment in info.value.reason


def test_a_pasted_secret_key_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    secret = "vksec1_" + "Q" * 43
    (tmp_path / "ops.toml").write_text(OPS.replace("ops.pub", secret))
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path)
    assert "this is a secret key, but a public key is needed" in info.value.reason
    assert secret not in str(info.value)


def test_corrupted_recipient_file_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "ops.pub").write_text("vkpub1_corrupted\n")
    (tmp_path / "ops.toml").write_text(OPS)
    with pytest.raises(PolicyError, match=r"ops\.toml:2: recipient 'ops\.pub': .*corrupted"):
        load_policy_dir(tmp_path)


def test_unreadable_recipient_file_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "ops.pub").mkdir()  # a directory cannot be read as a file
    (tmp_path / "ops.toml").write_text(OPS)
    with pytest.raises(PolicyError, match=r"ops\.toml:2: recipient 'ops\.pub': cannot read"):
        load_policy_dir(tmp_path)


def test_duplicate_groups_across_files_name_both_files(tmp_path: Path) -> None:
    write_key(tmp_path, "ops.pub")
    (tmp_path / "a.toml").write_text(OPS)
    (tmp_path / "b.toml").write_text("# same group again\n" + OPS)
    with pytest.raises(PolicyError) as info:
        load_policy_dir(tmp_path)
    assert (info.value.source, info.value.line) == ("b.toml", 2)
    assert "defined in both a.toml and b.toml" in info.value.reason


@pytest.mark.parametrize("extra", [None, "notes.txt", "sub/x.toml", ".hidden.toml"])
def test_a_directory_without_policy_files_is_an_error(tmp_path: Path, extra: str | None) -> None:
    if extra is not None:
        (tmp_path / extra).parent.mkdir(exist_ok=True)
        (tmp_path / extra).write_text(OPS)
    with pytest.raises(PolicyError, match="no policy files in"):
        load_policy_dir(tmp_path)
    assert [e.reason for e in check_policy_dir(tmp_path)] == [f"no policy files in {tmp_path}"]


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy directory"):
        load_policy_dir(tmp_path / "missing")


def test_an_undecodable_policy_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bin.toml").write_bytes(b"group = \"\xff\"\n")
    [problem] = check_policy_dir(tmp_path)
    assert problem.source == "bin.toml" and "cannot read policy file" in problem.reason


def test_check_collects_every_problem_in_every_file(tmp_path: Path) -> None:
    write_key(tmp_path, "ops.pub")
    (tmp_path / "a.toml").write_text('group = "a"\n\n[[rules]\n')
    (tmp_path / "b.toml").write_text('group = "b"\n[[rules]]\nprefix = "/b/"\n'
                                     'allow = ["fly"]\ncolour = "red"\n')
    (tmp_path / "c.toml").write_text(OPS.replace("ops", "c").replace("c.pub", "gone.pub"))
    (tmp_path / "d.toml").write_text(OPS)
    (tmp_path / "e.toml").write_text(OPS)
    found = [str(e).split(": ")[0] for e in check_policy_dir(tmp_path)]
    assert found == ["a.toml:3", "b.toml:4", "b.toml:5", "c.toml:2", "e.toml:1"]


def test_load_raises_all_problems_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('group = "A"\n')
    (tmp_path / "b.toml").write_text('group = "b"\nextra = 1\n')
    with pytest.raises(PolicyDirError) as info:
        load_policy_dir(tmp_path)
    assert [(p.source, p.line) for p in info.value.problems] == [("a.toml", 1), ("b.toml", 2)]
    assert "2 problems" in info.value.reason
    assert "a.toml:1: group name 'A'" in info.value.reason
    assert "b.toml:2: unknown field 'extra'" in info.value.reason


def test_retired_keys_are_resolved_and_must_not_also_be_recipients(tmp_path: Path) -> None:
    """``retired = [...]``: keys a group held before a rotation, named by the coverage
    report (a value still sealed to one needs a rotation); never a current recipient."""
    current = write_key(tmp_path, "ops.pub")
    old = write_key(tmp_path, "ops-2025.pub")
    (tmp_path / "ops.toml").write_text(OPS.replace(
        'recipients = ["ops.pub"]\n', 'recipients = ["ops.pub"]\nretired = ["ops-2025.pub"]\n'))
    loaded = load_policy_dir(tmp_path)
    assert loaded.recipients_for("ops") == (current,)
    assert loaded.retired["ops"] == (old,)
    (tmp_path / "ops.toml").write_text(OPS.replace(
        'recipients = ["ops.pub"]\n', 'recipients = ["ops.pub"]\nretired = ["ops.pub", '
        '"missing.pub"]\n'))
    problems = [str(p) for p in check_policy_dir(tmp_path)]
    assert any("both a recipient and retired" in p and "ops.toml:3" in p for p in problems)
    assert any("retired key 'missing.pub'" in p for p in problems), problems
