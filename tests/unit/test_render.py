"""The pure parts of ``vaultkey render``: templates, resource files, commands, output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaultkey.durations import duration
from vaultkey.errors import CommandFailed, TemplateError, UsageError
from vaultkey.render.output import Target, apply, command_argv, unchanged
from vaultkey.render.resource import load_resource, mode
from vaultkey.render.template import Scope, render

VALUES = {"/a/db/host": b"db", "/a/db/port": b"5432", "/a/svc/x": b"10.0.0.1:80",
          "/a/bin": b"\xff\xfe", "/a/json": b'{"k": [1, 2]}', "/k": b"single"}


def _render(text: str, prefixes: list[str] | None = None, keys: list[str] | None = None) -> str:
    return render(text, "t.j2", Scope(VALUES, 7, prefixes or ["/a/"], keys or ["/k"]))


def test_helpers():
    assert _render("{{ get('/a/db/host') }}:{{ get('/a/db/port') }}") == "db:5432"
    assert _render("{{ getv('/a/none', '') }}|{{ getv('/a/db/host', 'x') }}") == "|db"
    assert _render("{{ exists('/a/none') }} {{ exists('/k') }}") == "False True"
    assert _render("{{ ls('/a') | join(',') }}") == "bin,db,json,svc"
    assert _render("{% for kv in gets('/a/db/') %}{{ kv.key }}={{ kv.value }};{% endfor %}") \
        == "/a/db/host=db;/a/db/port=5432;"
    assert _render("{{ json('/a/json').k[1] }} {{ get('/a/json') | fromjson | tojson }}") \
        == '2 {"k": [1, 2]}'
    assert _render("{{ 'hi' | b64encode }} {{ 'aGk=' | b64decode }}") == "aGk= hi"
    assert _render("{% for s in services('/a/svc') %}{{ s.host }} {{ s.port }}{% endfor %}") \
        == "10.0.0.1 80"
    assert _render("{{ revision }}\n") == "7\n"  # the trailing newline is kept


@pytest.mark.parametrize(("text", "message"), [
    ("{{ get('/a/missing') }}", "key /a/missing does not exist (revision 7)"),
    ("{{ get('/b/x') }}", "/b/x is not loaded by this template"),
    ("{{ get('/a/bin') }}", "/a/bin is not UTF-8 text"),
    ("{{ json('/a/db/host') }}", "/a/db/host is not JSON"),
    ("{{ nothing }}", "'nothing' is undefined"),
    ("line one\n{% if %}", "t.j2:2: template syntax error"),
    ("{{ ''.__class__.__mro__ }}", "t.j2"),
])
def test_template_errors_never_render_an_empty_value(text, message):
    with pytest.raises(TemplateError) as caught:
        _render(text)
    assert message in caught.value.message


def test_the_sandbox_refuses_unsafe_calls():
    with pytest.raises(TemplateError):
        _render("{{ get.__globals__ }}")


def test_durations_modes_and_commands():
    assert duration("250ms", "x") == 0.25 and duration("2s", "x") == 2.0
    assert duration("1m", "x") == 60.0 and duration(3, "x") == 3.0
    for bad in ("soon", "-1s", "1h"):
        with pytest.raises(UsageError):
            duration(bad, "x")
    assert mode("0640", "x") == 0o640 and mode("600", "x") == 0o600
    with pytest.raises(UsageError):
        mode("0999", "x")
    src, dest = Path("/tmp/a b/.f"), Path("/tmp/a b/f")
    assert command_argv("check {{src}} > /dev/null", src, dest) == [
        "/bin/sh", "-c", "check '/tmp/a b/.f' > /dev/null"]
    assert command_argv(["check", "{{src}}", "{{dest}}"], src, dest) == [
        "check", "/tmp/a b/.f", "/tmp/a b/f"]


def test_resource_files_refuse_what_they_do_not_know(tmp_path):
    path = tmp_path / "r.toml"
    cases = {
        'owner_name = "x"\n[[template]]\nsrc="a"\ndest="b"\nkeys=["/k"]\n':
            "unknown field(s) owner_name",
        '[[template]]\nsrc="a"\ndest="b"\nkeys=["/k"]\nowner_id = 0\n':
            "unknown field(s) owner_id",
        '[[template]]\nsrc="a"\ndest="b"\n': "name the prefixes or keys",
        '[[template]]\ndest="b"\nkeys=["/k"]\n': "'src' (a path) is required",
        '[[template]]\nsrc="a"\ndest="b"\nkeys=["/k/../x"]\n': "template #1",
        '[[template]]\nsrc="a"\ndest="b"\nkeys=["/k"]\nmode="777x"\n': "octal mode",
        '[[template]]\nsrc="a"\ndest="b"\nkeys=["/k"]\ncheck_cmd=3\n': "a command is a string",
        'wait = "2s"\n': "no [[template]] tables",
        "[[template]\n": "TOML syntax error",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(UsageError) as caught:
            load_resource(path)
        assert message in caught.value.message and str(path) in caught.value.message, text
    path.write_text('wait = "200ms"\n[[template]]\nsrc = "t.j2"\ndest = "out"\n'
                    'prefixes = ["/a"]\nkeys = ["/k"]\nreload_cmd = ["true"]\n')
    res = load_resource(path)
    assert (res.wait, res.max_wait, res.prefixes, res.keys) == (0.2, 0.8, ["/a/"], ["/k"])
    assert res.templates[0].target.dest == tmp_path / "out"
    assert res.templates[0].target.mode == 0o600


def test_apply_stages_checks_and_renames(tmp_path):
    dest = tmp_path / "out"
    target = Target(dest, 0o640, check_cmd=["grep", "-q", "ok", "{{src}}"])
    assert apply(target, b"ok 1\n") and dest.read_bytes() == b"ok 1\n"
    assert dest.stat().st_mode & 0o777 == 0o640
    assert unchanged(target, b"ok 1\n") and not apply(target, b"ok 1\n")
    with pytest.raises(CommandFailed, match="old file is kept"):
        apply(target, b"bad\n")
    assert dest.read_bytes() == b"ok 1\n"
    assert os.listdir(tmp_path) == ["out"]  # the staged file is gone
    missing = Target(tmp_path / "nowhere" / "out")
    with pytest.raises(UsageError, match="does not exist"):
        apply(missing, b"x")
    with pytest.raises(CommandFailed, match="could not start"):
        apply(Target(dest, reload_cmd=["/nonexistent/reload"]), b"ok 2\n")
