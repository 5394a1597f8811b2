"""Load a policy directory: every ``*.toml`` in it, plus the recipients' public keys.

The parsing and the ACL semantics live in the pure :mod:`vaultkey.policy.engine`; this
module does the file I/O. Each recipient entry of a policy is either inline
public key text (``vkpub1_...``) or a public key file name relative to the
policy directory::

    >>> import tempfile, pathlib
    >>> from vaultkey.keys import PublicKey
    >>> from vaultkey.policy.load import load_policy_dir
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "ops.pub").write_text(PublicKey(bytes(32)).to_file_text())
    >>> _ = (d / "ops.toml").write_text(
    ...     'group = "ops"\\nrecipients = ["ops.pub"]\\n'
    ...     '[[rules]]\\nprefix = "/ops/"\\nallow = ["read"]\\n')
    >>> loaded = load_policy_dir(d)
    >>> loaded.policy_set.readers("/ops/db")
    ['ops']
    >>> loaded.recipients_for("ops") == (PublicKey(bytes(32)),)
    True

:func:`check_policy_dir` returns every problem (for ``vaultkey policy check``,
which prints each as ``file:line: message``, i.e. ``str(error)``);
:func:`load_policy_dir` raises the single problem, or a :class:`PolicyDirError`
listing all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from vaultkey.errors import KeyFileError, PolicyError
from vaultkey.keys import (
    PUBLIC_TAG,
    SECRET_TAG,
    SIGNING_PUBLIC_TAG,
    SIGNING_SECRET_TAG,
    PublicKey,
    SigningPublicKey,
)
from vaultkey.policy.engine import GROUP_ENTRY, Policy, PolicySet, duplicate_group_errors
from vaultkey.policy.parse import check_policy_text
from vaultkey.signatures import Writers

INLINE_KEY_PREFIX = PUBLIC_TAG + "_"
_KEY_TEXT_PREFIXES = (INLINE_KEY_PREFIX, SECRET_TAG + "_", SIGNING_PUBLIC_TAG + "_",
                      SIGNING_SECRET_TAG + "_")
NamedSigner = tuple[str, SigningPublicKey]
T = TypeVar("T")


class PolicyDirError(PolicyError):
    """Several problems in a policy directory; ``problems`` holds each one."""

    def __init__(self, directory: str, problems: list[PolicyError]) -> None:
        listing = "\n".join(f"  {p.message}" for p in problems)
        super().__init__(f"{len(problems)} problems in policy files:\n{listing}",
                         source=directory)
        self.problems = problems


@dataclass(frozen=True)
class LoadedPolicies:
    """A validated policy directory: the ACL plus each group's recipient keys."""

    directory: Path
    policy_set: PolicySet
    recipients: Mapping[str, tuple[PublicKey, ...]]
    signers: Mapping[str, tuple[NamedSigner, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    # Each signature rule's pattern -> the writers it accepts (resolved).
    required: Mapping[tuple[str, bool], Writers] = field(
        default_factory=lambda: MappingProxyType({}))
    # Each group's retired keys (``retired = [...]``): no longer recipients.
    retired: Mapping[str, tuple[PublicKey, ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    def recipients_for(self, group: str) -> tuple[PublicKey, ...]:
        """The public keys of *group* (empty for an unknown group)."""
        return self.recipients.get(group, ())

    def writers_for(self, path: str) -> Writers | None:
        """The writers whose signature the key *path* requires; None: no requirement."""
        rule = self.policy_set.signature_rule(path)
        return None if rule is None else self.required[(rule.path, rule.is_prefix)]


def _policy_files(root: Path) -> list[Path]:
    try:
        files = [p for p in root.iterdir()
                 if p.suffix == ".toml" and not p.name.startswith(".") and p.is_file()]
    except OSError as exc:
        raise PolicyError(f"cannot read policy directory: {exc.strerror or exc}",
                          source=str(root)) from exc
    if not files:
        raise PolicyError(f"no policy files in {root}", source=str(root))
    return sorted(files, key=lambda p: p.name)


def _read_policy(path: Path) -> tuple[Policy | None, list[PolicyError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [PolicyError(f"cannot read policy file: {exc}", source=path.name)]
    return check_policy_text(text, path.name)


def _resolve_one(root: Path, entry: str) -> PublicKey:
    if entry.startswith(_KEY_TEXT_PREFIXES):  # a pasted secret key is an error, not a file
        return PublicKey.from_text(entry, "inline public key")
    return PublicKey.load(root / entry)


def resolve_key_entry(entry: str, root: Path | None = None) -> PublicKey:
    """A public key from inline ``vkpub1_`` text or a file path (relative to *root*).

    Errors never echo key text (a pasted secret key is shortened and refused).
    """
    base = root or Path(".")
    try:
        return _resolve_one(base, entry)
    except (KeyFileError, OSError) as exc:
        raise KeyFileError(f"key {_display(entry)}: {_strip_source(exc, base / entry)}") from None


def _display(entry: str) -> str:
    """An entry for an error message; key text is shortened (it might be a secret key)."""
    if entry.startswith(_KEY_TEXT_PREFIXES):
        return repr(entry[:7] + "...")  # the type tag only, never key material
    return repr(entry)


def _strip_source(exc: KeyFileError | OSError, path: Path) -> str:
    """The key error's reason without the ``SOURCE: `` the key module prepends."""
    if not isinstance(exc, KeyFileError):
        return str(exc)
    for source in (str(path), "inline public key", "inline public signing key"):
        if exc.message.startswith(source + ": "):
            return exc.message[len(source) + 2:]
    return exc.message


def _resolve_recipients(root: Path, policy: Policy) -> tuple[tuple[PublicKey, ...],
                                                             list[PolicyError]]:
    keys: dict[str, PublicKey] = {}
    errors: list[PolicyError] = []
    for index, entry in enumerate(policy.recipients):
        try:
            key = _resolve_one(root, entry)
        except (KeyFileError, OSError) as exc:
            reason = _strip_source(exc, root / entry)
            errors.append(PolicyError(f"recipient {_display(entry)}: {reason}",
                                      source=policy.source, line=policy.recipient_line(index)))
            continue
        keys.setdefault(key.key_id, key)
    if policy.may_read and not policy.recipients:
        errors.append(PolicyError(
            f"group {policy.group!r} may read but has no recipients", source=policy.source,
            line=policy.recipients_line or policy.group_line))
    return tuple(keys.values()), errors


def _resolve_each(root: Path, entries: tuple[str, ...], load: Callable[[Path, str], T],
                  what: str, policy: Policy, line: int | None) -> tuple[list[T],
                                                                         list[PolicyError]]:
    """Each entry loaded (relative to *root*), and one error per entry that fails."""
    found: list[T] = []
    errors: list[PolicyError] = []
    for entry in entries:
        try:
            found.append(load(root, entry))
        except (KeyFileError, OSError) as exc:
            reason = _strip_source(exc, root / entry)
            errors.append(PolicyError(f"{what} {_display(entry)}: {reason}",
                                      source=policy.source, line=line))
    return found, errors


def _resolve_retired(root: Path, policy: Policy, current: tuple[PublicKey, ...]) -> tuple[
        tuple[PublicKey, ...], list[PolicyError]]:
    keys, errors = _resolve_each(root, policy.retired, _resolve_one, "retired key", policy,
                                 policy.retired_line)
    recipients = {k.kid for k in current}
    errors += [PolicyError(f"key {key.key_id} is both a recipient and retired in group "
                           f"{policy.group!r}", source=policy.source, line=policy.retired_line)
               for key in keys if key.kid in recipients]
    return tuple(keys), errors


def _signer(root: Path, entry: str) -> NamedSigner:
    """A public signing key from inline text (named by its key id) or a file (its stem)."""
    if entry.startswith(_KEY_TEXT_PREFIXES):
        key = SigningPublicKey.from_text(entry, "inline public signing key")
        return key.key_id, key
    return Path(entry).name.removesuffix(".sigpub"), SigningPublicKey.load(root / entry)


def _resolve_signers(root: Path, policy: Policy) -> tuple[tuple[NamedSigner, ...],
                                                          list[PolicyError]]:
    found, errors = _resolve_each(root, policy.signers, _signer, "signer", policy,
                                  policy.signers_line)
    return tuple(found), errors


def _resolve_required(root: Path, policy_set: PolicySet,
                      signers: Mapping[str, tuple[NamedSigner, ...]]) -> tuple[
        dict[tuple[str, bool], Writers], list[PolicyError]]:
    """Each signature rule's writers: its groups' signers and its listed keys."""
    required: dict[tuple[str, bool], Writers] = {}
    errors: list[PolicyError] = []
    for sig_rule in policy_set.signature_rules:
        named: list[NamedSigner] = []
        for rule in sig_rule.rules:
            for entry in rule.require_signature:
                problem = None
                if entry.startswith(GROUP_ENTRY):
                    group = entry[len(GROUP_ENTRY):]
                    if group not in signers:
                        problem = f"require_signature: unknown group {group!r}"
                    elif not signers[group]:
                        problem = f"require_signature: group {group!r} lists no signers"
                    named.extend(signers.get(group, ()))
                else:
                    try:
                        named.append(_signer(root, entry))
                    except (KeyFileError, OSError) as exc:
                        problem = (f"require_signature {_display(entry)}: "
                                   f"{_strip_source(exc, root / entry)}")
                if problem is not None:
                    errors.append(PolicyError(problem, source=rule.source, line=rule.line))
        required[(sig_rule.path, sig_rule.is_prefix)] = Writers.of(named)
    return required, errors


@dataclass
class _Scan:
    policies: list[Policy]
    recipients: dict[str, tuple[PublicKey, ...]]
    signers: dict[str, tuple[NamedSigner, ...]]
    problems: list[PolicyError]
    retired: dict[str, tuple[PublicKey, ...]] = field(default_factory=dict)


def _scan(directory: str | os.PathLike[str]) -> _Scan:
    root = Path(directory)
    found = _Scan([], {}, {}, [])
    for path in _policy_files(root):
        policy, errors = _read_policy(path)
        found.problems.extend(errors)
        if policy is None:
            continue
        keys, errors = _resolve_recipients(root, policy)
        found.problems.extend(errors)
        signers, errors = _resolve_signers(root, policy)
        found.problems.extend(errors)
        retired, errors = _resolve_retired(root, policy, keys)
        found.problems.extend(errors)
        found.retired.setdefault(policy.group, retired)
        found.policies.append(policy)
        found.recipients.setdefault(policy.group, keys)
        found.signers.setdefault(policy.group, signers)
    found.problems.extend(duplicate_group_errors(found.policies))
    return found


def _required(root: Path, found: _Scan) -> tuple[PolicySet | None,
                                                 dict[tuple[str, bool], Writers]]:
    """The policy set and its resolved signature rules (problems go to *found*)."""
    if duplicate_group_errors(found.policies):
        return None, {}
    policy_set = PolicySet(found.policies)
    required, errors = _resolve_required(root, policy_set, found.signers)
    found.problems.extend(errors)
    return policy_set, required


def check_policy_dir(directory: str | os.PathLike[str]) -> list[PolicyError]:
    """Every problem in the policy directory (empty list: all valid)."""
    try:
        found = _scan(directory)
        _required(Path(directory), found)
    except PolicyError as exc:
        return [exc]
    return found.problems


def load_policy_dir(directory: str | os.PathLike[str]) -> LoadedPolicies:
    """Load and validate a policy directory; raises PolicyError on any problem."""
    found = _scan(directory)
    policy_set, required = _required(Path(directory), found)
    problems = found.problems
    if len(problems) == 1:
        raise problems[0]
    if problems or policy_set is None:
        raise PolicyDirError(str(directory), problems)
    return LoadedPolicies(Path(directory), policy_set, MappingProxyType(found.recipients),
                          MappingProxyType(found.signers), MappingProxyType(required),
                          MappingProxyType(found.retired))


__all__ = [
    "INLINE_KEY_PREFIX",
    "LoadedPolicies",
    "PolicyDirError",
    "check_policy_dir",
    "load_policy_dir",
]
