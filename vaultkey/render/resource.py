"""Template resources: which templates one ``vaultkey render`` process keeps up to date.

A TOML file, in the spirit of confd's ``conf.d/*.toml`` but several templates per file and
no silently ignored keys (confd ignores ``owner =``, a real source of world-readable
secrets); every path is relative to the resource file::

    wait = "0.5s"         # quiet time after the last change before rendering (debounce)
    max_wait = "2s"       # ... but never later than this after the first change

    [[template]]
    src = "haproxy.cfg.j2"
    dest = "/etc/haproxy/haproxy.cfg"
    prefixes = ["/services/web/"]      # loaded, and watched
    keys = ["/shared/tls/bundle"]      # loaded; watched through their parent prefix
    mode = "0640"                      # default 0600
    owner = "root"                     # user name or uid; group likewise
    group = "haproxy"
    check_cmd = "haproxy -c -f {{src}}"
    reload_cmd = ["systemctl", "reload", "haproxy"]
    timeout = "30s"                    # for each command
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaultkey.durations import duration
from vaultkey.errors import InvalidPath, UsageError
from vaultkey.paths import validate_key, validate_prefix
from vaultkey.render.output import DEFAULT_TIMEOUT, Target

_TOP = {"wait", "max_wait", "template"}
_FIELDS = {"src", "dest", "prefixes", "keys", "mode", "owner", "group", "check_cmd",
           "reload_cmd", "timeout"}
DEFAULT_WAIT = 0.5


@dataclass(frozen=True)
class TemplateSpec:
    """One template: its source, where it goes, and what it reads."""

    src: Path
    target: Target
    prefixes: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.src)


@dataclass(frozen=True)
class Resource:
    templates: list[TemplateSpec]
    wait: float = DEFAULT_WAIT
    max_wait: float = 4 * DEFAULT_WAIT

    @property
    def prefixes(self) -> list[str]:
        return sorted({p for t in self.templates for p in t.prefixes})

    @property
    def keys(self) -> list[str]:
        return sorted({k for t in self.templates for k in t.keys})


def mode(text: object, what: str) -> int:
    value = str(text).strip()
    if not re.fullmatch(r"0?[0-7]{3,4}", value) or int(value, 8) > 0o7777:
        raise UsageError(f"{what}: mode {text!r} is not an octal mode such as \"0600\"")
    return int(value, 8)


def user_id(value: object, what: str, *, group: bool = False) -> int:
    import grp
    import pwd

    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    name = str(value)
    try:
        return grp.getgrnam(name).gr_gid if group else pwd.getpwnam(name).pw_uid
    except KeyError:
        raise UsageError(f"{what}: no such {'group' if group else 'user'} {name!r}") from None


def command(value: object, what: str) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"{what}: a command is a string (run by /bin/sh -c) or a list of strings")


def template_spec(data: dict[str, Any], base: Path, where: str) -> TemplateSpec:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(_FIELDS))})")
    for required in ("src", "dest"):
        if not isinstance(data.get(required), str):
            raise UsageError(f"{where}: {required!r} (a path) is required")
    try:
        prefixes = [validate_prefix(p) for p in _strings(data.get("prefixes", []), where)]
        keys = [validate_key(k) for k in _strings(data.get("keys", []), where)]
    except InvalidPath as exc:
        raise UsageError(f"{where}: {exc.message}") from None
    if not prefixes and not keys:
        raise UsageError(f"{where}: name the prefixes or keys the template reads")
    target = Target(
        dest=(base / data["dest"]).absolute(),
        mode=mode(data.get("mode", "0600"), where),
        uid=None if "owner" not in data else user_id(data["owner"], where),
        gid=None if "group" not in data else user_id(data["group"], where, group=True),
        check_cmd=command(data.get("check_cmd"), f"{where}: check_cmd"),
        reload_cmd=command(data.get("reload_cmd"), f"{where}: reload_cmd"),
        timeout=duration(data.get("timeout", DEFAULT_TIMEOUT), f"{where}: timeout"))
    return TemplateSpec((base / data["src"]).absolute(), target, prefixes, keys)


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: prefixes and keys are arrays of paths")
    return list(value)


def load_resource(path: str | Path) -> Resource:
    """Read and check a resource file; every problem is a UsageError naming the file."""
    import tomllib

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{p}: TOML syntax error: {exc}") from None
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise UsageError(f"{p}: unknown field(s) {', '.join(unknown)} "
                         "(allowed: wait, max_wait, [[template]])")
    tables = data.get("template")
    if not isinstance(tables, list) or not tables:
        raise UsageError(f"{p}: no [[template]] tables")
    templates = [template_spec(t, p.parent, f"{p}: template #{i}")
                 for i, t in enumerate(tables, 1)]
    wait = duration(data.get("wait", DEFAULT_WAIT), f"{p}: wait")
    return Resource(templates, wait, duration(data.get("max_wait", 4 * wait), f"{p}: max_wait"))


__all__ = ["Resource", "TemplateSpec", "duration", "load_resource", "template_spec"]
