"""The operator console's static assets, served at ``/ui/`` (issue 14).

Plain HTML, CSS and hand-written JavaScript modules, shipped inside the package:
no build step and no third-party URL. Only the names in :data:`ASSETS` are ever
served, so a request path can never reach another file (no path traversal)::

    >>> from vaultkey.proxy.console import SECURITY_HEADERS, asset
    >>> asset("").media_type
    'text/html; charset=utf-8'
    >>> asset("../../proxy/config.py") is None
    True
    >>> SECURITY_HEADERS["X-Frame-Options"]
    'DENY'

The page holds no data and no secret: every answer it shows comes from the
``/v1`` API, with the token the user pasted (kept in ``sessionStorage``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png"}
# The fixed allow-list: the URL name under /ui/ and the packaged file it serves.
ASSETS = {"": "index.html", "index.html": "index.html", "app.css": "app.css",
          "app.js": "app.js", "core.js": "core.js", "keyspace.js": "keyspace.js",
          "views.js": "views.js", "admin.js": "admin.js", "favicon.png": "favicon.png"}

# Why each header (docs/SECURITY.md, "The operator console"): scripts, styles and fetches
# only from the proxy itself, so an injected key name can neither run nor load code; no
# framing (clickjacking); no MIME sniffing of an asset into something else; no Referer
# that could carry a URL elsewhere; nothing cached on disk by the browser.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    media_type: str


@functools.cache
def _load(filename: str) -> Asset:
    body = resources.files(__package__).joinpath(filename).read_bytes()
    suffix = filename[filename.rindex("."):]
    return Asset(filename, body, _TYPES[suffix])


def asset(name: str) -> Asset | None:
    """The asset served at ``/ui/<name>``, or None for any name not on the allow-list."""
    filename = ASSETS.get(name)
    return None if filename is None else _load(filename)


__all__ = ["ASSETS", "CSP", "SECURITY_HEADERS", "Asset", "asset"]
