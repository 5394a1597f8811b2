r"""Parse policy TOML text into :class:`~vaultkey.policy.engine.Policy`, with file:line errors.

Pure: no file or network I/O (:mod:`vaultkey.policy.load` reads the files)::

    >>> from vaultkey.policy.parse import parse_policy
    >>> policy = parse_policy('group = "web"\n[[rules]]\nprefix = "/web/"\nallow = ["read"]\n')
    >>> policy.group, policy.rules[0].path
    ('web', '/web/')

``tomllib`` reports no positions, so lines are found by scanning the text: the
line of a top-level field, or of the N-th ``[[rules]]`` header and the fields
inside it.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, TypeGuard

from vaultkey.errors import InvalidPath, PolicyError
from vaultkey.paths import validate_pattern
from vaultkey.policy.engine import (
    _CAP_NAMES,
    _CAP_VALUES,
    _TOML_TYPES,
    GROUP_ENTRY,
    GROUP_NAME_RE,
    RULE_FIELDS,
    TOP_FIELDS,
    Capability,
    Policy,
    Rule,
)

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
        recipients = self._strings(data.get("recipients", []), "field 'recipients'",
                                   self.lines.top("recipients"))
        signers = self._strings(data.get("signers", []), "field 'signers'",
                                self.lines.top("signers"))
        retired = self._strings(data.get("retired", []), "field 'retired'",
                                self.lines.top("retired"))
        rules = self._rules(data.get("rules", []))
        if self.errors or group is None:
            return None
        recipients_line = self.lines.top("recipients")
        return Policy(
            group=group, rules=rules, recipients=recipients, description=str(description),
            source=self.source, group_line=self.lines.top("group"),
            recipients_line=recipients_line,
            recipient_lines=tuple(self.lines.entry(recipients_line, r) for r in recipients),
            signers=signers, signers_line=self.lines.top("signers"),
            retired=retired, retired_line=self.lines.top("retired"))

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

    def _strings(self, value: object, what: str, line: int | None) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                  for v in value):
            self.fail(f"{what} must be an array of non-empty strings", line)
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
        signed = self._require_signature(index, data)
        if "allow" not in data and "deny" not in data and "require_signature" not in data:
            self.fail(f"{label}: needs 'allow', 'deny' or 'require_signature'",
                      self.lines.rule(index))
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
                    comment=str(comment), source=self.source, line=self.lines.rule(index),
                    require_signature=signed)

    def _require_signature(self, index: int, data: dict[str, Any]) -> tuple[str, ...]:
        if "require_signature" not in data:
            return ()
        line = self.lines.rule(index, "require_signature")
        label = f"rule #{index + 1}: 'require_signature'"
        before = len(self.errors)
        entries = self._strings(data["require_signature"], label, line)
        if not entries and len(self.errors) == before:
            self.fail(f"{label} must name at least one writer ('group:NAME', a .sigpub file "
                      "or vksigpub1_ key text)", line)
        for entry in entries:
            if entry.startswith(GROUP_ENTRY) and not GROUP_NAME_RE.fullmatch(
                    entry[len(GROUP_ENTRY):]):
                self.fail(f"{label}: {entry!r} is not a valid group name", line)
        return entries

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


__all__ = ["check_policy_text", "parse_policy"]
