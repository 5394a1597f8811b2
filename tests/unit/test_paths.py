"""The key path rules of docs/FORMAT.md section 3, table by table."""

from __future__ import annotations

import re

import pytest

from vaultkey.errors import InvalidPath
from vaultkey.paths import (
    MAX_PATH_BYTES,
    segments,
    validate_key,
    validate_pattern,
    validate_prefix,
)

VALID_KEYS = [
    "/a",
    "/app/db/password",
    "/équipe/clé",  # non-ASCII is fine: valid UTF-8
    "/a/.../b",  # only '.' and '..' are special, not longer runs of dots
    "/a/.hidden",
    "/a/b.",
    "/a/++",  # only a segment that is exactly '+' is reserved
    "/a/+b",
    "/with space/and-tab-free",
    "/a?b=c&d#e",
    "/zero\u200bwidth",  # Cf, not Cc: allowed
    "/line\u2028sep",  # Zl, not Cc: allowed
    "/emoji/\U0001f511",
    "/" + "a" * (MAX_PATH_BYTES - 1),  # exactly 1024 bytes
    "/" + "é" * ((MAX_PATH_BYTES - 1) // 2),  # 1023 bytes of 2-byte characters
]

# (path, stable part of the message)
INVALID_KEYS = [
    ("", "must be absolute"),
    ("a/b", "must be absolute"),
    ("./a", "must be absolute"),
    ("/", "must not end in '/'"),
    ("/a/", "must not end in '/'"),
    ("/a//", "must not end in '/'"),
    ("//", "must not end in '/'"),
    ("//a", "empty segment"),
    ("/a//b", "empty segment"),
    ("/.", "'.' segment"),
    ("/a/./b", "'.' segment"),
    ("/a/.", "'.' segment"),
    ("/..", "'..' segment"),
    ("/a/../b", "'..' segment"),
    ("/a/..", "'..' segment"),
    ("/+", "'+' segment"),
    ("/a/+/b", "'+' segment"),
    ("/a\x00b", "control character U+0000"),
    ("/a\x01", "control character U+0001"),
    ("/a\tb", "control character U+0009"),
    ("/a\nb", "control character U+000A"),
    ("/a\rb", "control character U+000D"),
    ("/a\x1f", "control character U+001F"),
    ("/a\x7f", "control character U+007F"),
    ("/a\x80", "control character U+0080"),
    ("/a\x85", "control character U+0085"),
    ("/a\x9f", "control character U+009F"),
    ("/a\\b", "backslash"),
    ("/a\\..\\b", "backslash"),
    ("/a%2fb", "'%'"),
    ("/a/%2e%2e", "'%'"),
    ("/" + "a" * MAX_PATH_BYTES, "1025 bytes"),
    ("/" + "é" * 512, "1025 bytes"),  # 512 characters, but 1025 UTF-8 bytes
    ("/a\udc80", "not valid UTF-8"),  # lone low surrogate
    ("/a\ud800b", "not valid UTF-8"),  # lone high surrogate
    ("/a\ud83d\udd11", "not valid UTF-8"),  # a surrogate pair in a str is not a character
]

NOT_STRINGS = [b"/a", None, 1, ["/a"], bytearray(b"/a")]


@pytest.mark.parametrize("path", VALID_KEYS)
def test_valid_key_is_returned_unchanged(path):
    assert validate_key(path) == path


@pytest.mark.parametrize(("path", "message"), INVALID_KEYS)
def test_invalid_key_is_refused(path, message):
    with pytest.raises(InvalidPath, match=re.escape(message)):
        validate_key(path)


@pytest.mark.parametrize("value", NOT_STRINGS)
def test_non_string_is_refused_everywhere(value):
    for check in (validate_key, validate_prefix):
        with pytest.raises(InvalidPath, match="must be a string"):
            check(value)


@pytest.mark.parametrize(
    ("prefix", "normalised"),
    [
        ("/", "/"),
        ("/a", "/a/"),
        ("/a/", "/a/"),
        ("/a/b", "/a/b/"),
        ("/a/b/", "/a/b/"),
        ("/équipe", "/équipe/"),
        ("/" + "a" * (MAX_PATH_BYTES - 2) + "/", "/" + "a" * (MAX_PATH_BYTES - 2) + "/"),
    ],
)
def test_valid_prefix_is_normalised_to_end_in_slash(prefix, normalised):
    assert validate_prefix(prefix) == normalised


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("", "must be absolute"),
        ("a/", "must be absolute"),
        ("//", "empty segment"),
        ("/a//", "empty segment"),
        ("//a/", "empty segment"),
        ("/./", "'.' segment"),
        ("/a/..", "'..' segment"),
        ("/a/../", "'..' segment"),
        ("/+/", "'+' segment"),
        ("/a\x00/", "control character U+0000"),
        ("/a\\", "backslash"),
        ("/a%/", "'%'"),
        ("/a\udc80/", "not valid UTF-8"),
        ("/" + "a" * MAX_PATH_BYTES, "1025 bytes"),
    ],
)
def test_invalid_prefix_is_refused(prefix, message):
    with pytest.raises(InvalidPath, match=re.escape(message)):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("pattern", "prefix", "expected"),
    [
        ("/+/db", False, "/+/db"),
        ("/app/+", False, "/app/+"),
        ("/+", True, "/+/"),
        ("/+/+/", True, "/+/+/"),
        ("/", True, "/"),
    ],
)
def test_patterns_allow_the_wildcard_segment(pattern, prefix, expected):
    assert validate_pattern(pattern, prefix=prefix) == expected


@pytest.mark.parametrize(
    ("pattern", "prefix", "message"),
    [
        ("/+/", False, "must not end in '/'"),
        ("/", False, "must not end in '/'"),
        ("/a/../+", False, "'..' segment"),
        ("/a//+", True, "empty segment"),
        ("/+\x00", False, "control character"),
        ("/+%", True, "'%'"),
    ],
)
def test_invalid_patterns_are_refused(pattern, prefix, message):
    with pytest.raises(InvalidPath, match=re.escape(message)):
        validate_pattern(pattern, prefix=prefix)


def test_key_and_prefix_name_the_same_subtree_rules():
    # '/a' is a key; '/a' and '/a/' as prefixes are the same prefix.
    assert validate_prefix("/a") == validate_prefix("/a/")
    assert segments(validate_prefix("/a/b")) == segments(validate_key("/a/b")) == ["a", "b"]
    assert segments("/") == []
