"""ACL policy engine: parse policy TOML text; decide (group, path, capability).

Pure: no file or network I/O (:mod:`vaultkey.policyload` reads a policy
directory and resolves recipient keys)::

    >>> from vaultkey.acl import PolicySet, parse_policy
    >>> text = '''group = "payments"
    ... [[rules]]
    ... prefix = "/payments/"
    ... allow = ["read", "write"]
    ... [[rules]]
    ... prefix = "/payments/ledger/"
    ... deny = ["write"]'''
    >>> acl = PolicySet([parse_policy(text, "payments.toml")])
    >>> acl.allowed("payments", "/payments/db/password", "write")
    True
    >>> print(acl.decide("payments", "/payments/ledger/2024", "write"))
    deny: payments.toml:5 prefix /payments/ledger/ denies write on /payments/ledger/2024
    >>> acl.readers("/payments/ledger/2024")
    ['payments']

Semantics (paths are segment lists: ``/a/b/`` is ``["a", "b"]``; a rule
segment ``+`` matches any one segment):

* A *prefix rule* R covers a target T iff ``len(T) >= len(R)`` and each
  ``R[i]`` is ``+`` or ``T[i]``: ``/payments`` and ``/payments/`` both cover
  ``/payments/x`` and ``/payments`` itself, never ``/payments2/x``.
* A *key rule* covers only key targets (never a prefix target, e.g. the prefix
  of a ``list``) with exactly as many segments, matching the same way.
* For (group, path, capability), only the group's rules naming the capability
  (in allow or deny) and covering the path count. The most specific decides:
  specificity is ``(is key rule, segment count, literal non-'+' segment
  count)`` compared as a tuple; at equal specificity deny beats allow.
* No applicable rule, or an unknown group: deny (default deny).

Callers validate paths first (:func:`vaultkey.paths.validate_key` / ``validate_prefix``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeGuard

from vaultkey.errors import InvalidPath, PolicyError
from vaultkey.paths import segments, validate_pattern


class Capability(StrEnum):
    """What a group may do on a path."""

    READ = "read"
    LIST = "list"
    WRITE = "write"
    DELETE = "delete"
    WATCH = "watch"


GROUP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
TOP_FIELDS = ("group", "description", "recipients", "rules")
RULE_FIELDS = ("prefix", "key", "allow", "deny", "comment")
_CAP_NAMES = ", ".join(c.value for c in Capability)
_CAP_VALUES = frozenset(c.value for c in Capability)
_TOML_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean", list: "array"}


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` entry; ``path`` is normalised (prefixes end in ``/``)."""

    path: str
    is_prefix: bool
    allow: frozenset[Capability] = frozenset()
    deny: frozenset[Capability] = frozenset()
    comment: str = ""
    source: str = "<policy>"
    line: int | None = None
    segs: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segs", tuple(segments(self.path)))

    @property
    def specificity(self) -> tuple[int, int, int]:
        """(is key rule, segment count, literal segment count): higher wins."""
        literals = sum(1 for s in self.segs if s != "+")
        return (0 if self.is_prefix else 1, len(self.segs), literals)

    @property
    def where(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def describe(self) -> str:
        return f"{'prefix' if self.is_prefix else 'key'} {self.path}"

    def effect(self, cap: Capability | str) -> bool | None:
        """True if the rule allows *cap*, False if it denies it, None if silent."""
        if cap in self.deny:
            return False
        return True if cap in self.allow else None

    def covers(self, path: str, *, is_prefix: bool = False) -> bool:
        return _covers(self.segs, self.is_prefix, segments(path), is_prefix)


def _covers(pattern: Sequence[str], rule_is_prefix: bool, target: Sequence[str],
            target_is_prefix: bool) -> bool:
    if rule_is_prefix:
        if len(target) < len(pattern):
            return False
    elif target_is_prefix or len(target) != len(pattern):
        return False
    return all(p in ("+", t) for p, t in zip(pattern, target, strict=False))


@dataclass(frozen=True)
class Policy:
    """One group's policy file. ``recipients`` are unresolved entries (file or key text)."""

    group: str
    rules: tuple[Rule, ...] = ()
    recipients: tuple[str, ...] = ()
    description: str = ""
    source: str = "<policy>"
    group_line: int | None = None
    recipients_line: int | None = None
    recipient_lines: tuple[int | None, ...] = ()

    @property
    def may_read(self) -> bool:
        """Whether any rule allows ``read`` (such a group needs recipients)."""
        return any(Capability.READ in rule.allow for rule in self.rules)

    def recipient_line(self, index: int) -> int | None:
        """Line of the *index*-th recipient entry, else of the ``recipients`` field."""
        found = self.recipient_lines[index] if index < len(self.recipient_lines) else None
        return self.recipients_line if found is None else found


@dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`PolicySet.decide`, with the deciding rule (if any)."""

    allowed: bool
    group: str
    path: str
    capability: Capability
    rule: Rule | None = None
    known_group: bool = True

    def explain(self) -> str:
        if self.rule is not None:
            verdict, verb = ("allow", "allows") if self.allowed else ("deny", "denies")
            return (f"{verdict}: {self.rule.where} {self.rule.describe()} {verb} "
                    f"{self.capability} on {self.path}")
        if not self.known_group:
            return f"deny: unknown group {self.group!r} (default deny)"
        return (f"deny: no rule in group {self.group!r} grants '{self.capability}' "
                f"on {self.path} (default deny)")

    def __str__(self) -> str:
        return self.explain()


_Entry = tuple[Rule, bool]  # a rule naming some capability, and whether it allows it


def _entries(rules: Iterable[Rule], cap: Capability) -> tuple[_Entry, ...]:
    """The rules naming *cap*, most specific first, deny before allow on ties."""
    found = [(rule, eff) for rule in rules if (eff := rule.effect(cap)) is not None]
    return tuple(sorted(found, key=lambda e: (e[0].specificity, not e[1]), reverse=True))


def duplicate_group_errors(policies: Iterable[Policy]) -> list[PolicyError]:
    """One error per policy whose group name an earlier policy already uses."""
    seen: dict[str, Policy] = {}
    errors = []
    for policy in policies:
        first = seen.setdefault(policy.group, policy)
        if first is not policy:
            errors.append(PolicyError(
                f"group {policy.group!r} is defined in both {first.source} and {policy.source}",
                source=policy.source, line=policy.group_line))
    return errors


class PolicySet:
    """All groups' policies, with per-(group, capability) rule lists precomputed."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        items = list(policies)
        errors = duplicate_group_errors(items)
        if errors:
            raise errors[0]
        self._groups = MappingProxyType({p.group: p for p in items})
        self._table: dict[tuple[str, str], tuple[_Entry, ...]] = {
            (p.group, cap): _entries(p.rules, cap) for p in items for cap in Capability}

    @property
    def groups(self) -> Mapping[str, Policy]:
        return self._groups

    def policy(self, group: str) -> Policy:
        """The policy of *group*; raises KeyError for an unknown group."""
        return self._groups[group]

    def _match(self, group: str, path: str, cap: Capability | str,
               is_prefix: bool) -> _Entry | None:
        entries = self._table.get((group, cap), ())
        if not entries:
            return None
        target = segments(path)
        return next((e for e in entries if _covers(e[0].segs, e[0].is_prefix, target, is_prefix)),
                    None)

    def allowed(self, group: str, path: str, cap: Capability | str, *,
                is_prefix: bool = False) -> bool:
        """Fast boolean form of :meth:`decide`."""
        entry = self._match(group, path, cap, is_prefix)
        return entry is not None and entry[1]

    def decide(self, group: str, path: str, cap: Capability | str, *,
               is_prefix: bool = False) -> Decision:
        """Decide and say why. Raises ValueError for an unknown capability name."""
        capability = Capability(cap)
        entry = self._match(group, path, capability, is_prefix)
        if entry is None:
            return Decision(False, group, path, capability, known_group=group in self._groups)
        return Decision(entry[1], group, path, capability, entry[0])

    def explain(self, group: str, path: str, cap: Capability | str, *,
                is_prefix: bool = False) -> str:
        return self.decide(group, path, cap, is_prefix=is_prefix).explain()

    def readers(self, path: str) -> list[str]:
        """Sorted names of the groups that may read the key *path*."""
        return sorted(g for g in self._groups if self.allowed(g, path, Capability.READ))


# ---------------------------------------------------------------- parsing

_HEADER_RE = re.compile(r"""^\s*\[{1,2}\s*[\w"'.\- ]+\s*\]{1,2}\s*(#.*)?$""")
_RULES_HEADER_RE = re.compile(r"""^\s*\[\[\s*["']?rules["']?\s*\]\]""")
_POSITION_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


class _Lines:
    """Finds 1-based line numbers of fields by scanning the text (tomllib has none)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [i for i, ln in enumerate(self.lines) if _HEADER_RE.match(ln)]
        self.rule_headers = [i for i in self.headers if _RULES_HEADER_RE.match(self.lines[i])]
        self.top_end = self.headers[0] if self.headers else len(self.lines)

    def _find(self, name: str, start: int, end: int) -> int | None:
        pattern = re.compile(rf"""^\s*["']?{re.escape(name)}["']?\s*[=.]""")
        return next((i + 1 for i in range(start, end) if pattern.match(self.lines[i])), None)

    def top(self, name: str) -> int | None:
        found = self._find(name, 0, self.top_end)
        if found is None:
            table = re.compile(rf"""^\s*\[{{1,2}}\s*["']?{re.escape(name)}["']?\s*[\].]""")
            found = next((i + 1 for i in self.headers if table.match(self.lines[i])), None)
        return found

    def rule(self, index: int, name: str | None = None) -> int | None:
        """Line of field *name* in the *index*-th rule, else of that rule's header."""
        if index >= len(self.rule_headers):
            return self.top("rules")
        start = self.rule_headers[index]
        if name is not None:
            end = next((h for h in self.headers if h > start), len(self.lines))
            found = self._find(name, start + 1, end)
            if found is not None:
                return found
        return start + 1

    def entry(self, after: int | None, value: str) -> int | None:
        """Line of the quoted string *value* at or after line *after* (array items)."""
        if after is None:
            return None
        quoted = (f'"{value}"', f"'{value}'")
        for i in range(after - 1, len(self.lines)):
            if any(q in self.lines[i] for q in quoted):
                return i + 1
        return after


def _type_name(value: object) -> str:
    default = "table" if isinstance(value, dict) else type(value).__name__
    return _TOML_TYPES.get(type(value), default)


class _Parser:
    """Validates one parsed document, collecting every problem it finds."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = _Lines(text)
        self.errors: list[PolicyError] = []

    def fail(self, message: str, line: int | None) -> None:
        self.errors.append(PolicyError(message, source=self.source, line=line))

    def is_str(self, value: object, what: str, line: int | None) -> TypeGuard[str]:
        if not isinstance(value, str):
            self.fail(f"{what} must be a string, not {_type_name(value)}", line)
        return isinstance(value, str)

    def policy(self, data: dict[str, Any]) -> Policy | None:
        for name in data:
            if name not in TOP_FIELDS:
                self.fail(f"unknown field {name!r} (allowed: {', '.join(TOP_FIELDS)})",
                          self.lines.top(name))
        group = self._group(data)
        description = data.get("description", "")
        self.is_str(description, "field 'description'", self.lines.top("description"))
        recipients = self._recipients(data.get("recipients", []))
        rules = self._rules(data.get("rules", []))
        if self.errors or group is None:
            return None
        recipients_line = self.lines.top("recipients")
        return Policy(
            group=group, rules=rules, recipients=recipients, description=str(description),
            source=self.source, group_line=self.lines.top("group"),
            recipients_line=recipients_line,
            recipient_lines=tuple(self.lines.entry(recipients_line, r) for r in recipients))

    def _group(self, data: dict[str, Any]) -> str | None:
        line = self.lines.top("group")
        value = data.get("group")
        if value is None:
            self.fail("missing required field 'group'", None)
            return None
        if not self.is_str(value, "field 'group'", line):
            return None
        if not GROUP_NAME_RE.fullmatch(value):
            self.fail(f"group name {value!r} is invalid (must match {GROUP_NAME_RE.pattern})",
                      line)
            return None
        return value

    def _recipients(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            self.fail("field 'recipients' must be an array of non-empty strings",
                      self.lines.top("recipients"))
            return ()
        return tuple(v.strip() for v in value)

    def _rules(self, value: object) -> tuple[Rule, ...]:
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            self.fail("field 'rules' must be an array of tables ([[rules]])",
                      self.lines.top("rules"))
            return ()
        parsed = [self._rule(i, r) for i, r in enumerate(value)]
        return tuple(r for r in parsed if r is not None)

    def _rule(self, index: int, data: dict[str, Any]) -> Rule | None:
        before = len(self.errors)
        label = f"rule #{index + 1}"
        for name in data:
            if name not in RULE_FIELDS:
                self.fail(f"{label}: unknown field {name!r} (allowed: {', '.join(RULE_FIELDS)})",
                          self.lines.rule(index, name))
        path = self._rule_path(index, data)
        allow, deny = self._caps(index, data, "allow"), self._caps(index, data, "deny")
        if "allow" not in data and "deny" not in data:
            self.fail(f"{label}: needs 'allow' or 'deny'", self.lines.rule(index))
        if "key" in data and Capability.LIST in allow | deny:
            self.fail(f"{label}: 'list' on a key rule never applies (list is checked on "
                      "prefixes); use prefix = ...", self.lines.rule(index, "key"))
        if both := allow & deny:
            names = ", ".join(sorted(both))
            self.fail(f"{label}: {names} both allowed and denied", self.lines.rule(index, "deny"))
        comment = data.get("comment", "")
        self.is_str(comment, f"{label}: 'comment'", self.lines.rule(index, "comment"))
        if len(self.errors) > before or path is None:
            return None
        return Rule(path=path, is_prefix="prefix" in data, allow=allow, deny=deny,
                    comment=str(comment), source=self.source, line=self.lines.rule(index))

    def _rule_path(self, index: int, data: dict[str, Any]) -> str | None:
        label = f"rule #{index + 1}"
        has_prefix, has_key = "prefix" in data, "key" in data
        if has_prefix and has_key:
            self.fail(f"{label}: has both 'prefix' and 'key' (use exactly one)",
                      self.lines.rule(index, "key"))
            return None
        if not (has_prefix or has_key):
            self.fail(f"{label}: needs 'prefix' or 'key'", self.lines.rule(index))
            return None
        name = "prefix" if has_prefix else "key"
        value, line = data[name], self.lines.rule(index, name)
        if not self.is_str(value, f"{label}: {name!r}", line):
            return None
        try:
            return validate_pattern(value, prefix=has_prefix)
        except InvalidPath as exc:
            self.fail(f"{label}: {exc.message}", line)
            return None

    def _caps(self, index: int, data: dict[str, Any], name: str) -> frozenset[Capability]:
        if name not in data:
            return frozenset()
        value, line = data[name], self.lines.rule(index, name)
        label = f"rule #{index + 1}"
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            self.fail(f"{label}: {name!r} must be a non-empty array of capability names "
                      f"({_CAP_NAMES})", line)
            return frozenset()
        bad = [v for v in value if v not in _CAP_VALUES]
        if bad:
            self.fail(f"{label}: unknown capability {', '.join(map(repr, bad))} in {name!r} "
                      f"(valid: {_CAP_NAMES})", line)
            return frozenset()
        return frozenset(Capability(v) for v in value)


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> PolicyError:
    message = str(exc)
    position = _POSITION_RE.search(message)
    if position is not None:
        return PolicyError(
            f"TOML syntax error: {message[:position.start()]} (column {position.group(2)})",
            source=source, line=int(position.group(1)))
    end = " (at end of document)"
    line = max(1, len(text.splitlines())) if message.endswith(end) else None
    return PolicyError(f"TOML syntax error: {message.removesuffix(end)}",
                       source=source, line=line)


def check_policy_text(text: str, source: str = "<policy>") -> tuple[Policy | None,
                                                                     list[PolicyError]]:
    """Parse one policy file, returning the policy (None if invalid) and all problems."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_syntax_error(exc, text, source)]
    parser = _Parser(text, source)
    policy = parser.policy(data)
    errors = sorted(parser.errors, key=lambda e: e.line or 0)
    return (None if errors else policy), errors


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse one policy file's text; raises the first PolicyError found."""
    policy, errors = check_policy_text(text, source)
    if errors:
        raise errors[0]
    assert policy is not None
    return policy


__all__ = ["GROUP_NAME_RE", "RULE_FIELDS", "TOP_FIELDS", "Capability", "Decision", "Policy",
           "PolicySet", "Rule", "check_policy_text", "duplicate_group_errors", "parse_policy"]
