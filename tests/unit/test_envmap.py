"""The names `vaultkey exec` gives values, and the errors that refuse a wrong environment."""

from __future__ import annotations

import doctest

import pytest

from vaultkey.client import envmap
from vaultkey.client.envmap import (
    Export,
    check_env_prefix,
    check_name,
    check_prefixes,
    child_env,
    env_name,
    fingerprint,
    parse_maps,
    plan,
)
from vaultkey.errors import InvalidPath, UsageError

SECRET = b"s3cr3t-\xff-value"


def test_module_docstring_examples_run():
    result = doctest.testmod(envmap)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(("path", "prefix", "env_prefix", "name"), [
    ("/payments/db/password", "/payments/", "", "DB_PASSWORD"),
    ("/payments/db/password", "/payments/db/", "", "PASSWORD"),
    ("/payments/db/password", "/", "", "PAYMENTS_DB_PASSWORD"),
    ("/app/db-url.v2", "/app/", "", "DB_URL_V2"),
    ("/app/Mixed/Case", "/app/", "", "MIXED_CASE"),
    ("/app/ünïcode key", "/app/", "", "_N_CODE_KEY"),
    ("/app/emoji☃", "/app/", "", "EMOJI_"),
    ("/app/2fa", "/app/", "", "_2FA"),
    ("/app/2fa", "/app/", "APP_", "APP_2FA"),
    ("/app/x", "/app/", "9", "_9X"),
    ("/app/x", "/app/", "app_", "app_X"),
    ("/app/already_UPPER_9", "/app/", "", "ALREADY_UPPER_9"),
])
def test_automatic_names(path, prefix, env_prefix, name):
    assert env_name(path, prefix, env_prefix) == name


def test_a_path_outside_its_prefix_has_no_name():
    with pytest.raises(UsageError, match="not under"):
        env_name("/other/x", "/app/")


@pytest.mark.parametrize("bad", ["APP-", "A=", "A B", "É", "\0"])
def test_env_prefix_is_letters_digits_and_underscore(bad):
    with pytest.raises(UsageError, match="--env-prefix"):
        check_env_prefix(bad)
    assert check_env_prefix("App_9") == "App_9" and check_env_prefix("") == ""


@pytest.mark.parametrize("bad", ["", "A=B", "=", "A\0B"])
def test_invalid_names_are_refused_naming_the_path(bad):
    with pytest.raises(UsageError, match="/app/k"):
        check_name(bad, "/app/k")
    assert check_name("lower.case-ok", "/app/k") == "lower.case-ok"


def test_prefixes_are_normalised_and_may_not_nest_or_repeat():
    assert check_prefixes(["/a", "/b/"]) == ["/a/", "/b/"]
    with pytest.raises(UsageError, match="--prefix /a/b/ is inside --prefix /a/"):
        check_prefixes(["/a/b", "/a/"])
    with pytest.raises(UsageError, match="inside"):
        check_prefixes(["/a/", "/a"])
    with pytest.raises(UsageError, match="at least one"):
        check_prefixes([])
    with pytest.raises(InvalidPath):
        check_prefixes(["relative/"])
    assert check_prefixes(["/ab/", "/a/"]) == ["/ab/", "/a/"]  # /ab/ is not inside /a/


def test_maps_split_at_the_last_equals_sign():
    assert parse_maps(["/a/db/password=PGPASSWORD", "/a/x=y=Z"]) == {
        "/a/db/password": "PGPASSWORD", "/a/x=y": "Z"}


@pytest.mark.parametrize(("spec", "match"), [
    ("/a/x", "expected PATH=NAME"), ("=NAME", "expected PATH=NAME"),
    ("/a/x=", "name is empty"), ("/a/x=A\0", "NUL"), ("a/x=A", "absolute"),
    ("/a/=A", "must not end"),
])
def test_bad_maps_are_refused(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_maps([spec])


def test_a_path_mapped_twice_is_refused():
    with pytest.raises(UsageError, match="given twice"):
        parse_maps(["/a/x=A", "/a/x=B"])


def test_plan_sorted_by_name_with_paths_and_values():
    exports = plan({"/app/": {"/app/z": b"1", "/app/db/url": b"2"},
                    "/shared/": {"/shared/a": b"3"}})
    assert exports == [Export("A", "/shared/a", b"3"), Export("DB_URL", "/app/db/url", b"2"),
                       Export("Z", "/app/z", b"1")]


def test_a_map_overrides_the_automatic_name_and_the_others_stay():
    exports = plan({"/p/": {"/p/db/password": SECRET, "/p/db/user": b"u"}},
                   {"/p/db/password": "PGPASSWORD"}, "APP_")
    assert [(e.name, e.path) for e in exports] == [("APP_DB_USER", "/p/db/user"),
                                                   ("PGPASSWORD", "/p/db/password")]


def test_a_map_of_a_key_that_was_not_loaded_is_an_error():
    with pytest.raises(UsageError, match=r"--map /p/nope: no such key was loaded \(under /p/\)"):
        plan({"/p/": {"/p/x": b"1"}}, {"/p/nope": "X"})


def test_two_paths_with_one_name_are_an_error_naming_both():
    with pytest.raises(UsageError) as info:
        plan({"/p/": {"/p/db-url": SECRET, "/p/db/url": SECRET}})
    assert "/p/db-url and /p/db/url would both be $DB_URL" in info.value.message
    assert repr(SECRET)[2:-1] not in info.value.diagnostics()


def test_collisions_across_prefixes_and_with_maps_are_errors():
    with pytest.raises(UsageError, match="/a/x and /b/x would both be"):
        plan({"/a/": {"/a/x": b"1"}, "/b/": {"/b/x": b"2"}})
    with pytest.raises(UsageError, match="/a/x and /a/y would both be \\$Y"):
        plan({"/a/": {"/a/x": b"1", "/a/y": b"2"}}, {"/a/x": "Y"})
    with pytest.raises(UsageError, match="would both be \\$SAME"):
        plan({"/a/": {"/a/x": b"1", "/a/y": b"2"}}, {"/a/x": "SAME", "/a/y": "SAME"})
    # a map that moves a key out of the way resolves a collision
    names = [e.name for e in plan({"/a/": {"/a/x": b"1"}, "/b/": {"/b/x": b"2"}},
                                  {"/b/x": "B_X"})]
    assert names == ["B_X", "X"]


def test_a_value_with_a_nul_byte_is_an_error_naming_the_path_not_the_value():
    with pytest.raises(UsageError) as info:
        plan({"/p/": {"/p/bin": b"dist\0inctive"}})
    text = info.value.diagnostics()
    assert "/p/bin" in text and "NUL" in text
    assert "dist" not in text and "inctive" not in text


def test_non_utf8_values_are_fine_and_exports_never_show_their_value():
    (export,) = plan({"/p/": {"/p/k": SECRET}})
    assert export.value == SECRET
    assert "s3cr3t" not in repr(export) and "s3cr3t" not in str(export)


def test_child_env_drops_inherited_vaultkey_variables_and_values_win():
    inherited = {b"PATH": b"/bin", b"VAULTKEY_TOKEN": b"tok", b"VAULTKEY_KEY": b"k",
                 b"DB_URL": b"old", b"vaultkey_lower": b"kept"}
    exports = [Export("DB_URL", "/p/db/url", b"new\xff"), Export("VAULTKEY_X", "/p/x", b"1")]
    assert child_env(exports, inherited) == {b"PATH": b"/bin", b"DB_URL": b"new\xff",
                                             b"vaultkey_lower": b"kept", b"VAULTKEY_X": b"1"}
    assert child_env(exports, None) == {b"DB_URL": b"new\xff", b"VAULTKEY_X": b"1"}


def test_fingerprint_changes_with_any_name_or_value_and_only_then():
    one = {b"A": b"1", b"B": b"2"}
    assert fingerprint(one) == fingerprint({b"B": b"2", b"A": b"1"})
    assert fingerprint(one) != fingerprint({b"A": b"1", b"B": b"3"})
    assert fingerprint(one) != fingerprint({b"A": b"1", b"C": b"2"})
    assert fingerprint({b"A": b"12"}) != fingerprint({b"A1": b"2"})  # lengths are hashed
    assert fingerprint({}) != fingerprint({b"": b""})
