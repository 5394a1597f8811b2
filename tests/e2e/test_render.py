"""``vaultkey render`` against the real etcd and the real TLS proxy (issue 12, part 1)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests._helpers.procs import popen, stop
from tests._helpers.wait import wait_until
from tests.e2e.test_cli import vk
from vaultkey.client import Client
from vaultkey.errors import TemplateError
from vaultkey.render.resource import Resource, template_spec
from vaultkey.render.runner import render_once

STAMP = (f"{sys.executable} -c \"import sys, time; "
         "open(sys.argv[1], 'a').write(repr(time.time()) + chr(10))\"")


def _client(proxy) -> Client:
    return Client(proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
                  trust=proxy.trust_dir(), cacert=str(proxy.ca_path))


def _resource(tmp_path: Path, source: str, **fields: object) -> Resource:
    (tmp_path / "t.j2").write_text(source)
    data = {"src": str(tmp_path / "t.j2"), "dest": str(tmp_path / "out.conf"), **fields}
    return Resource([template_spec(data, tmp_path, "test")])


def test_render_content_mode_helpers_and_one_revision(proxy, tmp_path):
    with _client(proxy) as c:
        c.set("/alpha/render/db/host", b"db.internal")
        c.set("/alpha/render/db/password", b"s3cret")
        c.set("/alpha/render/flags", b'{"cache": true, "ttl": 30}')
        c.set("/alpha/render/svc/a", b"10.0.0.1:8080")
        c.set("/alpha/render/svc/b", b"10.0.0.2:8081")
        res = _resource(tmp_path, (
            "host={{ get('/alpha/render/db/host') }}\n"
            "pw={{ get('/alpha/render/db/password') | b64encode }}\n"
            "opt={{ getv('/alpha/render/optional', 'none') }}\n"
            "ttl={{ json('/alpha/render/flags').ttl }}\n"
            "children={{ ls('/alpha/render/') | join(',') }}\n"
            "{% for s in services('/alpha/render/svc/') %}server {{ s.name }} {{ s.host }}"
            ":{{ s.port }}\n{% endfor %}"), prefixes=["/alpha/render/"])
        outcome = render_once(c, res)
    assert outcome.errors == [] and outcome.changed == [str(tmp_path / "out.conf")]
    out = tmp_path / "out.conf"
    assert out.read_text() == ("host=db.internal\npw=czNjcmV0\nopt=none\nttl=30\n"
                               "children=db,flags,svc\nserver a 10.0.0.1:8080\n"
                               "server b 10.0.0.2:8081\n")
    assert out.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.conf")]  # no stage left


def test_a_missing_key_fails_and_leaves_dest_untouched(proxy, tmp_path):
    (tmp_path / "out.conf").write_text("old\n")
    os.chmod(tmp_path / "out.conf", 0o600)
    res = _resource(tmp_path, "x={{ get('/alpha/render/missing/key') }}\n",
                    keys=["/alpha/render/missing/key"])
    with _client(proxy) as c:
        outcome = render_once(c, res)
    [error] = outcome.errors
    assert isinstance(error, TemplateError)
    assert "key /alpha/render/missing/key does not exist" in error.message
    assert (tmp_path / "out.conf").read_text() == "old\n"
    (tmp_path / "t.j2").write_text("x={{ get('/alpha/other') }}\n")
    with _client(proxy) as c:
        [error] = render_once(c, res).errors
    assert "is not loaded by this template" in error.message


def test_no_write_and_no_reload_when_nothing_changed(proxy, tmp_path):
    reloads = tmp_path / "reloads"
    with _client(proxy) as c:
        c.set("/alpha/render/noop/v", b"1")
        res = _resource(tmp_path, "v={{ get('/alpha/render/noop/v') }}\n",
                        prefixes=["/alpha/render/noop/"], reload_cmd=f"{STAMP} {reloads}")
        assert render_once(c, res).changed
        before = os.stat(tmp_path / "out.conf")
        for _ in range(3):
            assert render_once(c, res).changed == []
        after = os.stat(tmp_path / "out.conf")
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert len(reloads.read_text().splitlines()) == 1
        os.chmod(tmp_path / "out.conf", 0o644)  # drift in mode alone is repaired (and reloads)
        assert render_once(c, res).changed
    assert (tmp_path / "out.conf").stat().st_mode & 0o777 == 0o600
    assert len(reloads.read_text().splitlines()) == 2


def test_readers_never_see_a_partial_file(proxy, tmp_path):
    big = {b"a": b"a" * 400_000, b"b": b"b" * 400_000}
    out = tmp_path / "out.conf"
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                data = out.read_bytes()
            except FileNotFoundError:
                continue
            assert data in (big[b"a"], big[b"b"]), len(data)
            seen.append(len(data))

    reader = threading.Thread(target=read)
    with _client(proxy) as c:
        res = _resource(tmp_path, "{{ get('/alpha/render/big/v') }}",
                        keys=["/alpha/render/big/v"])
        c.set("/alpha/render/big/v", big[b"a"])
        render_once(c, res)
        reader.start()
        try:
            for i in range(10):
                c.set("/alpha/render/big/v", big[b"ba"[i % 2:i % 2 + 1]])
                assert render_once(c, res).changed
        finally:
            done.set()
            reader.join()
    assert len(seen) > 10
    print(f"\n{len(seen)} reads during 10 renders of 400 kB: all complete")


def test_a_failing_check_keeps_the_old_file_and_a_hanging_reload_is_killed(proxy, tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("v={{ get('/alpha/render/chk/v') }}\n")
    dest = tmp_path / "out.conf"
    with _client(proxy) as c:
        c.set("/alpha/render/chk/v", b"good")
    common = ["render", str(template), str(dest), "--prefix", "/alpha/render/chk/"]
    ok = vk(proxy, "alpha", *common, "--check-cmd", "grep -q good {{src}}")
    assert ok.returncode == 0, ok.stderr
    with _client(proxy) as c:
        c.set("/alpha/render/chk/v", b"bad")
    failed = vk(proxy, "alpha", *common, "--check-cmd", "grep -q good {{src}}")
    assert failed.returncode == 13 and b"check command" in failed.stderr
    assert b"the old file is kept" in failed.stderr
    assert dest.read_text() == "v=good\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.conf")]

    pidfile = tmp_path / "reload.pid"
    start = time.monotonic()
    hung = vk(proxy, "alpha", *common, "--timeout", "1s", "--reload-cmd",
              f"echo $$ > {pidfile}; sleep 60")
    took = time.monotonic() - start
    assert hung.returncode == 13 and b"did not finish in 1 s and was killed" in hung.stderr
    assert dest.read_text() == "v=bad\n"  # the reload runs after the file is in place
    pid = int(pidfile.read_text())
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=5)
    assert took < 15
    print(f"\nhanging reload killed after its 1 s timeout; the command took {took:.2f} s")


def test_a_resource_file_drives_two_templates_from_one_process(proxy, tmp_path):
    (tmp_path / "a.j2").write_text("a={{ get('/alpha/render/res/a') }}\n")
    (tmp_path / "b.j2").write_text("{% for k in gets('/alpha/render/res/') %}"
                                   "{{ k.key }}={{ k.value }}\n{% endfor %}")
    (tmp_path / "render.toml").write_text(
        'wait = "0.3s"\n'
        '[[template]]\nsrc = "a.j2"\ndest = "a.conf"\nkeys = ["/alpha/render/res/a"]\n'
        '[[template]]\nsrc = "b.j2"\ndest = "b.conf"\nprefixes = ["/alpha/render/res/"]\n'
        'mode = "0640"\n')
    with _client(proxy) as c:
        c.set("/alpha/render/res/a", b"1")
        c.set("/alpha/render/res/b", b"2")
    once = vk(proxy, "alpha", "render", "--config", str(tmp_path / "render.toml"))
    assert once.returncode == 0, once.stderr
    assert (tmp_path / "a.conf").read_text() == "a=1\n"
    assert (tmp_path / "b.conf").read_text() == "/alpha/render/res/a=1\n/alpha/render/res/b=2\n"
    assert (tmp_path / "b.conf").stat().st_mode & 0o777 == 0o640
    proc = popen([sys.executable, "-m", "vaultkey", "render", "--config",
                  str(tmp_path / "render.toml"), "--watch"], env=proxy.env("alpha"),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with _client(proxy) as c:
            time.sleep(1.0)  # the watches are open
            c.set("/alpha/render/res/a", b"10")
        assert wait_until(lambda: (tmp_path / "a.conf").read_text() == "a=10\n"
                          and "/alpha/render/res/a=10" in (tmp_path / "b.conf").read_text())
    finally:
        stop(proc)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[template]]\nsrc = "a.j2"\ndest = "x"\nkeys = ["/a"]\nowner_name = "r"\n')
    refused = vk(proxy, "alpha", "render", "--config", str(bad))
    assert refused.returncode == 64 and b"unknown field(s) owner_name" in refused.stderr


def test_a_burst_of_20_writes_gives_exactly_one_reload(proxy, tmp_path):
    template = tmp_path / "t.j2"
    template.write_text("{% for k in gets('/alpha/render/burst/') %}{{ k.value }}\n"
                        "{% endfor %}")
    dest, reloads = tmp_path / "out.conf", tmp_path / "reloads"
    delays = []
    for round_ in range(3):
        with _client(proxy) as c:
            c.set("/alpha/render/burst/k", b"start")
        reloads.unlink(missing_ok=True)
        proc = popen([sys.executable, "-m", "vaultkey", "render", str(template), str(dest),
                      "--prefix", "/alpha/render/burst/", "--watch", "--wait", "0.3s",
                      "--reload-cmd", f"{STAMP} {reloads}"], env=proxy.env("alpha"),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_until(reloads.exists, timeout=20)  # the first render
            time.sleep(1.0)
            with _client(proxy) as c:
                for i in range(20):  # 20 writes within 1 s
                    c.set("/alpha/render/burst/k", f"v{round_}-{i}".encode())
                    time.sleep(0.04)
                last = time.time()
            assert wait_until(lambda: len(reloads.read_text().splitlines()) >= 2, timeout=20)
            time.sleep(1.5)  # no second reload comes later
            stamps = [float(x) for x in reloads.read_text().splitlines()]
            assert len(stamps) == 2, stamps
            assert dest.read_text() == f"v{round_}-19\n"  # the final state, never an earlier
            delays.append(stamps[1] - last)
        finally:
            stop(proc)
    print(f"\nlast write to reload (wait 0.3 s): median {statistics.median(delays) * 1000:.0f} "
          f"ms, {', '.join(f'{d * 1000:.0f}' for d in delays)} ms")


@pytest.mark.parametrize("args", [["--watch", "--once"], []])
def test_usage_errors(proxy, args):
    result = vk(proxy, "alpha", "render", *args)
    assert result.returncode == 64


def test_a_failed_check_is_retried_without_waiting_for_a_change(proxy, tmp_path):
    """confd retries only at the next change; here the run is retried with backoff, so the
    file appears once the check passes, with no new write."""
    template, dest, marker = tmp_path / "t.j2", tmp_path / "out.conf", tmp_path / "ready"
    template.write_text("v={{ get('/alpha/render/retry/v') }}\n")
    with _client(proxy) as c:
        c.set("/alpha/render/retry/v", b"1")
    proc = popen([sys.executable, "-m", "vaultkey", "render", str(template), str(dest),
                  "--prefix", "/alpha/render/retry/", "--watch",
                  "--check-cmd", f"test -e {marker}"], env=proxy.env("alpha"),
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        assert not dest.exists()  # the check fails: nothing is put in place
        marker.touch()
        assert wait_until(dest.exists, timeout=15)
        assert dest.read_text() == "v=1\n"
    finally:
        stop(proc)


def test_owner_and_group_are_applied(proxy, tmp_path):
    import grp
    import pwd

    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    with _client(proxy) as c:
        c.set("/alpha/render/own/v", b"x")
        res = _resource(tmp_path, "{{ get('/alpha/render/own/v') }}", keys=["/alpha/render/own/v"],
                        owner=me, group=group, mode="0640")
        assert render_once(c, res).errors == []
    st = (tmp_path / "out.conf").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (os.getuid(), os.getgid(), 0o640)
    with pytest.raises(Exception, match="no such user"):
        _resource(tmp_path, "x", keys=["/k"], owner="no-such-user-vaultkey")
