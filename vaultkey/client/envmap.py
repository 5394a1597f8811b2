"""Environment variables from key paths: the names ``vaultkey exec`` gives values.

Pure functions, no I/O: the rules are tested on their own, and the CLI only loads,
runs and watches. The automatic name of the key at PATH under ``--prefix P``:

1. the part of PATH after P (``/payments/db/password`` under ``/payments/``: ``db/password``);
2. every character outside ``[A-Za-z0-9_]`` (so every ``/``, ``-`` and ``.``) becomes ``_``;
3. upper-cased;
4. the ``--env-prefix`` put in front (itself made of ``[A-Za-z0-9_]`` only);
5. a name that then starts with a digit gets a ``_`` in front, because a shell (and
   POSIX) does not accept a variable name that starts with a digit.

``--map PATH=NAME`` names one loaded key NAME *instead of* its automatic name; every
other key keeps its automatic name (maps add to and override the automatic names, they
never select). A mapped PATH that is not loaded is an error, so a typo never silently
exports nothing. Why errors rather than "last one wins": two paths with one name, or a
name the environment cannot hold (empty, ``=`` or NUL in it), or a value with a NUL
byte (the environment is NUL-terminated strings) would otherwise hand the command a
wrong or truncated secret. Every error names the paths, never a value::

    >>> env_name("/payments/db/password", "/payments/")
    'DB_PASSWORD'
    >>> env_name("/app/2fa-code.txt", "/app/")
    '_2FA_CODE_TXT'
    >>> env_name("/app/db/url", "/app/", "APP_")
    'APP_DB_URL'
    >>> [(e.name, e.path) for e in plan({"/app/": {"/app/db/pw": b"x", "/app/port": b"80"}},
    ...                                 {"/app/db/pw": "PGPASSWORD"})]
    [('PGPASSWORD', '/app/db/pw'), ('PORT', '/app/port')]
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vaultkey.errors import UsageError
from vaultkey.paths import validate_key, validate_prefix

_OTHER = re.compile(r"[^A-Za-z0-9_]")
_ENV_PREFIX = re.compile(r"[A-Za-z0-9_]*")
INHERITED_DROPPED = b"VAULTKEY_"
"""Inherited variables whose names start with this never reach the command: the token
(and the key's location) stay with vaultkey."""


@dataclass(frozen=True)
class Export:
    """One variable for the command: its name, the key it comes from, the value.
    Its repr never shows the value."""

    name: str
    path: str
    value: bytes = field(repr=False)


def env_name(path: str, prefix: str, env_prefix: str = "") -> str:
    """The automatic name of the key *path* under *prefix* (see the module doc)."""
    if not path.startswith(prefix):
        raise UsageError(f"{path} is not under {prefix}")
    name = env_prefix + _OTHER.sub("_", path[len(prefix):]).upper()
    return "_" + name if name[:1].isdigit() else name


def check_env_prefix(env_prefix: str) -> str:
    """*env_prefix* if it holds only ``[A-Za-z0-9_]``, so that automatic names stay portable."""
    if not _ENV_PREFIX.fullmatch(env_prefix):
        raise UsageError(f"--env-prefix {env_prefix!r}: use only letters, digits and _")
    return env_prefix


def check_name(name: str, path: str) -> str:
    """*name* if the environment can hold it (not empty, no ``=``, no NUL)."""
    if not name:
        raise UsageError(f"{path}: the variable name is empty")
    if "=" in name or "\0" in name:
        raise UsageError(f"{path}: the variable name {name!r} holds '=' or NUL, which an "
                         "environment variable name cannot")
    return name


def check_prefixes(prefixes: Sequence[str]) -> list[str]:
    """The *prefixes*, normalised, if none is inside another: each key has one name."""
    if not prefixes:
        raise UsageError("give at least one --prefix")
    checked = [validate_prefix(p) for p in prefixes]
    for i, one in enumerate(checked):
        for other in checked[i + 1:]:
            if one.startswith(other) or other.startswith(one):
                inner, outer = (one, other) if len(one) >= len(other) else (other, one)
                raise UsageError(f"--prefix {inner} is inside --prefix {outer}: a key under "
                                 "both would have two names")
    return checked


def parse_maps(specs: Iterable[str]) -> dict[str, str]:
    """``PATH=NAME`` texts as ``{path: name}``; split at the last ``=`` (a name has none)."""
    maps: dict[str, str] = {}
    for spec in specs:
        path, sep, name = spec.rpartition("=")
        if not sep or not path:
            raise UsageError(f"--map {spec!r}: expected PATH=NAME")
        key = validate_key(path)
        if key in maps:
            raise UsageError(f"--map {key}: given twice")
        maps[key] = check_name(name, key)
    return maps


def plan(loaded: Mapping[str, Mapping[str, bytes]], maps: Mapping[str, str] | None = None,
         env_prefix: str = "") -> list[Export]:
    """The variables for *loaded* (``{prefix: {path: value}}``), sorted by name.

    Raises UsageError for a mapped path that was not loaded, two paths with one name,
    an invalid name or a value with a NUL byte; the message names paths, never values.
    """
    maps = maps or {}
    owner = {path: prefix for prefix, values in loaded.items() for path in values}
    for path in sorted(maps):
        if path not in owner:
            where = ", ".join(sorted(loaded)) or "no --prefix"
            raise UsageError(f"--map {path}: no such key was loaded (under {where})")
    by_name: dict[str, Export] = {}
    for path in sorted(owner):
        prefix = owner[path]
        name = check_name(maps.get(path) or env_name(path, prefix, env_prefix), path)
        if name in by_name:
            first = by_name[name].path
            raise UsageError(f"{first} and {path} would both be ${name}: rename one with "
                             "--map PATH=NAME")
        value = loaded[prefix][path]
        if b"\0" in value:
            raise UsageError(f"{path}: the value holds a NUL byte, which an environment "
                             "variable cannot")
        by_name[name] = Export(name, path, value)
    return [by_name[name] for name in sorted(by_name)]


def child_env(exports: Iterable[Export],
              inherited: Mapping[bytes, bytes] | None) -> dict[bytes, bytes]:
    """The command's environment, as bytes (values need not be UTF-8): *inherited* (None:
    nothing, ``--pristine``) without any ``VAULTKEY_*`` variable, then the exports, which
    win over an inherited variable of the same name."""
    env = {k: v for k, v in (inherited or {}).items() if not k.startswith(INHERITED_DROPPED)}
    env.update((e.name.encode("utf-8", "surrogateescape"), e.value) for e in exports)
    return env


def fingerprint(env: Mapping[bytes, bytes]) -> str:
    """A digest of *env*: equal environments, equal digests (so an unchanged re-write of a
    value restarts nothing), without keeping a second copy of the secrets."""
    digest = hashlib.sha256()
    for key in sorted(env):
        for part in (key, env[key]):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


__all__ = ["Export", "check_env_prefix", "check_name", "check_prefixes", "child_env",
           "env_name", "fingerprint", "parse_maps", "plan"]
