"""Key path rules, checked before anything touches etcd or a ciphertext.

A *key path* names one value; a *prefix* names a subtree::

    >>> from vaultkey.paths import validate_key, validate_prefix, segments
    >>> validate_key("/payments/db/password")
    '/payments/db/password'
    >>> validate_prefix("/payments")          # normalised to end in "/"
    '/payments/'
    >>> segments("/payments/db/password")
    ['payments', 'db', 'password']

The rules (also in docs/FORMAT.md):

* absolute: starts with ``/``; UTF-8 encodable; at most 1024 bytes;
* segments are separated by single ``/``: no empty segment (``//``), no ``.``
  or ``..``, and no segment that is exactly ``+`` (the policy wildcard);
* no control characters (Unicode category Cc, which includes NUL, DEL and the
  C1 range), no backslash and no ``%`` (so a percent-encoded ``/`` or ``..``
  can never be smuggled past an HTTP router);
* a key path does not end in ``/``; a prefix may, and is normalised to end in
  ``/`` (``/`` alone is the root prefix).
"""

from __future__ import annotations

import unicodedata

from vaultkey.errors import InvalidPath

MAX_PATH_BYTES = 1024

_FORBIDDEN_CHARS = {"\\": "backslash", "%": "'%'"}


def _check_common(path: object, what: str) -> str:
    if not isinstance(path, str):
        raise InvalidPath(f"{what} must be a string, not {type(path).__name__}")
    if not path.startswith("/"):
        raise InvalidPath(f"{what} {path!r} must be absolute (start with '/')")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPath(f"{what} is not valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise InvalidPath(f"{what} is {size} bytes; the maximum is {MAX_PATH_BYTES}")
    for ch in path:
        if unicodedata.category(ch) == "Cc":
            raise InvalidPath(f"{what} contains control character U+{ord(ch):04X}")
        if ch in _FORBIDDEN_CHARS:
            raise InvalidPath(f"{what} {path!r} contains a {_FORBIDDEN_CHARS[ch]}")
    return path


def _check_segments(
    path: str, parts: list[str], what: str, *, allow_wildcard: bool = False
) -> None:
    for part in parts:
        if part == "":
            raise InvalidPath(f"{what} {path!r} has an empty segment ('//')")
        if part in (".", ".."):
            raise InvalidPath(f"{what} {path!r} has a '{part}' segment")
        if part == "+" and not allow_wildcard:
            raise InvalidPath(f"{what} {path!r} has a '+' segment (reserved for policies)")


def validate_key(path: object) -> str:
    """Return *path* unchanged if it is a valid key path, else raise InvalidPath."""
    checked = _check_common(path, "key path")
    if checked == "/" or checked.endswith("/"):
        raise InvalidPath(f"key path {checked!r} must not end in '/' (that names a prefix)")
    _check_segments(checked, checked[1:].split("/"), "key path")
    return checked


def validate_prefix(path: object) -> str:
    """Return *path* normalised to end in ``/`` if it is a valid prefix."""
    checked = _check_common(path, "prefix")
    if checked == "/":
        return checked
    body = checked[1:-1] if checked.endswith("/") else checked[1:]
    _check_segments(checked, body.split("/"), "prefix")
    normalised = "/" + body + "/"
    size = len(normalised.encode("utf-8"))
    if size > MAX_PATH_BYTES:  # the added '/' counts: the store checks the same string
        raise InvalidPath(f"prefix is {size} bytes; the maximum is {MAX_PATH_BYTES}")
    return normalised


def validate_pattern(path: object, *, prefix: bool) -> str:
    """Validate a policy rule path, where a ``+`` segment matches any one segment.

    With ``prefix=True`` the result is normalised to end in ``/`` like
    :func:`validate_prefix`; otherwise it follows the key path rules.
    """
    what = "rule prefix" if prefix else "rule key"
    checked = _check_common(path, what)
    if prefix:
        if checked == "/":
            return checked
        body = checked[1:-1] if checked.endswith("/") else checked[1:]
        _check_segments(checked, body.split("/"), what, allow_wildcard=True)
        return "/" + body + "/"
    if checked == "/" or checked.endswith("/"):
        raise InvalidPath(f"{what} {checked!r} must not end in '/' (use prefix = ...)")
    _check_segments(checked, checked[1:].split("/"), what, allow_wildcard=True)
    return checked


def segments(path: str) -> list[str]:
    """The segments of a validated key path or prefix (no empty strings)."""
    return [p for p in path.split("/") if p]


__all__ = ["MAX_PATH_BYTES", "segments", "validate_key", "validate_pattern", "validate_prefix"]
