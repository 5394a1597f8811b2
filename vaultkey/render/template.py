"""Templates: Jinja2's ``SandboxedEnvironment`` with ``StrictUndefined``, over one snapshot.

A template never renders a missing key as an empty string (confd's ``<no value>``,
consul-template's default): ``get("/x")`` on a missing key fails, naming the key and the
revision; ``getv("/x", "")`` is the explicit way to accept an empty default. The helpers::

    get(path)              the value, as text (UTF-8)
    getv(path, default)    the value, or default if the key does not exist
    exists(path)           whether it exists
    ls(prefix)             the names of the children under prefix (one segment, sorted)
    gets(prefix)           [{"key": path, "value": text}, ...] under prefix, sorted by path
    json(path)             the value parsed as JSON (also the filter `fromjson`)
    services(prefix)       registrations under prefix: [{"name", "address", "host", "port"}]
    filters: b64encode, b64decode, fromjson, tojson

Only keys the template's resource loads (its prefixes and keys) can be named: anything
else is an error that says so, never a silent empty value.
"""

from __future__ import annotations

import base64
import json as _json
from collections.abc import Mapping
from typing import Any

from vaultkey.errors import TemplateError


class Scope:
    """The values a template may name: one snapshot, limited to its prefixes and keys."""

    def __init__(self, values: Mapping[str, bytes], revision: int, prefixes: list[str],
                 keys: list[str]) -> None:
        self.values, self.revision = values, revision
        self.prefixes, self.keys = prefixes, keys

    def _loaded(self, path: str) -> None:
        if path in self.keys or any(path.startswith(p) for p in self.prefixes):
            return
        raise TemplateError(f"{path} is not loaded by this template: add it (or a prefix "
                            "above it) to the template's keys or prefixes")

    def _text(self, path: str, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateError(f"{path} is not UTF-8 text; use b64encode(getb(...))") from None

    def get(self, path: str) -> str:
        return self._text(path, self.getb(path))

    def getb(self, path: str) -> bytes:
        self._loaded(path)
        if path not in self.values:
            raise TemplateError(f"key {path} does not exist (revision {self.revision})",
                                hint="use getv(path, default) for an optional key")
        return self.values[path]

    def getv(self, path: str, default: str = "") -> str:
        self._loaded(path)
        return self.get(path) if path in self.values else default

    def exists(self, path: str) -> bool:
        self._loaded(path)
        return path in self.values

    def _under(self, prefix: str) -> list[str]:
        pfx = prefix if prefix.endswith("/") else prefix + "/"
        self._loaded(pfx)
        return sorted(p for p in self.values if p.startswith(pfx))

    def ls(self, prefix: str) -> list[str]:
        pfx = prefix if prefix.endswith("/") else prefix + "/"
        return sorted({p[len(pfx):].split("/", 1)[0] for p in self._under(prefix)})

    def gets(self, prefix: str) -> list[dict[str, str]]:
        return [{"key": p, "value": self.get(p)} for p in self._under(prefix)]

    def json(self, path: str) -> Any:
        return _fromjson(self.get(path), path)

    def services(self, prefix: str) -> list[dict[str, Any]]:
        """Registrations (``vaultkey register``) under *prefix*, one per key, value
        ``host:port``: for load-balancer configs. Sorted by name."""
        out = []
        for path in self._under(prefix):
            address = self.get(path).strip()
            host, sep, port = address.rpartition(":")
            out.append({"name": path.rsplit("/", 1)[1], "path": path, "address": address,
                        "host": host if sep else address, "port": port if sep else ""})
        return out


def _fromjson(text: str, where: str = "value") -> Any:
    try:
        return _json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"{where} is not JSON: {exc}") from None


def render(source: str, name: str, scope: Scope) -> str:
    """Render template text *source* (named *name* in errors) over *scope*."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                               keep_trailing_newline=True)
    env.filters.update(
        b64encode=lambda v: base64.b64encode(v if isinstance(v, bytes) else
                                             str(v).encode()).decode("ascii"),
        b64decode=lambda v: base64.b64decode(str(v)).decode("utf-8"),
        fromjson=_fromjson, tojson=lambda v: _json.dumps(v, sort_keys=True))
    env.globals.update(get=scope.get, getb=scope.getb, getv=scope.getv, exists=scope.exists,
                       ls=scope.ls, gets=scope.gets, json=scope.json,
                       services=scope.services, revision=scope.revision)
    try:
        return env.from_string(source).render()
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{name}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{name}: {exc.message} (templates have no implicit empty "
                            "values)") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{name}: {exc}") from None


__all__ = ["Scope", "render"]
