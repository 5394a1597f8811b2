"""The SDK's and the CLI's watch, TTL writes and registrations against a real TLS proxy
on a real etcd."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import vaultkey
from tests._helpers.procs import kill_tree, popen, stop
from tests._helpers.wait import wait_until, within
from vaultkey.client import AsyncClient, Client


def client(proxy: Any, cls: type[Any] = Client) -> Any:
    return cls(proxy.addr, proxy.tokens["alpha"], key=proxy.key_path("alpha"),
               cacert=str(proxy.ca_path), trust=proxy.trust_dir())


def gone(vk: Client, path: str) -> bool:
    try:
        vk.get(path)
    except vaultkey.NotFound:
        return True
    return False


# -- the SDK ----------------------------------------------------------------------------

def test_a_watch_sees_a_put_and_a_delete_in_order_decrypted(proxy):
    with client(proxy) as vk, client(proxy) as writer, within(30), \
            vk.watch("/alpha/w1/") as changes:
        def write() -> None:  # once the watch has its first bookmark: it is subscribed
            assert wait_until(lambda: changes.revision is not None)
            writer.set("/alpha/w1/a", b"A\x00\xff")
            writer.delete("/alpha/w1/a")

        writing = threading.Thread(target=write, daemon=True)
        writing.start()
        put, deleted = next(changes), next(changes)
        writing.join(30)  # its delete's answer may come after the watch's event
    assert (put.type, put.path, put.value, put.error) == ("put", "/alpha/w1/a", b"A\x00\xff", None)
    assert (deleted.type, deleted.path, deleted.value) == ("delete", "/alpha/w1/a", None)
    assert deleted.revision > put.revision == put.create_revision and put.version == 1


def test_a_watch_from_a_revision_replays_what_came_after_it(proxy):
    with client(proxy) as vk:
        start = vk.set("/alpha/w2/start", b"0")
        revisions = [vk.set(f"/alpha/w2/{i}", str(i).encode()) for i in range(3)]
        with within(30), vk.watch("/alpha/w2", since=start) as changes:
            seen = [next(changes) for _ in range(3)]
            assert changes.revision == revisions[-1]
    assert [(e.path, e.revision, e.value) for e in seen] == [
        (f"/alpha/w2/{i}", rev, str(i).encode()) for i, rev in enumerate(revisions)]


def test_a_resume_point_etcd_compacted_away_is_a_resync_event_and_the_watch_goes_on(proxy):
    with client(proxy) as vk:
        old = vk.set("/alpha/w3/a", b"1")
        newest = vk.set("/alpha/w3/a", b"2")
        proxy.store().conn.client().compact(newest, physical=True)
        with within(30), vk.watch("/alpha/w3/", since=old - 1) as changes:
            first = next(changes)
            assert (first.type, first.path, first.reason) == ("resync", "/alpha/w3/", "compacted")
            assert changes.revision == first.revision >= newest
            assert vk.get_many("/alpha/w3/") == {"/alpha/w3/a": b"2"}  # what a caller does
            vk.set("/alpha/w3/after", b"x")
            assert next(changes).path == "/alpha/w3/after"


def test_async_watch_and_registration(proxy):
    async def run() -> list[tuple[str, str, bytes | None]]:
        async with client(proxy, AsyncClient) as vk:
            start = await vk.set("/alpha/w4/start", b"0")
            async with vk.register("/alpha/w4/svc", b"here", ttl=5) as reg:
                assert await vk.get("/alpha/w4/svc") == b"here" and reg.lease is not None
            async with vk.watch("/alpha/w4/", since=start) as changes:
                return [(e.type, e.path, e.value) for e in [await anext(changes),
                                                            await anext(changes)]]

    assert asyncio.run(asyncio.wait_for(run(), 30)) == [
        ("put", "/alpha/w4/svc", b"here"), ("delete", "/alpha/w4/svc", None)]


def test_a_registration_outlives_its_ttl_and_goes_at_once_when_it_ends(proxy):
    with client(proxy) as vk:
        with vk.register("/alpha/w5/svc", b"10.0.0.7:80", ttl=2) as reg:
            deadline = time.monotonic() + 3.5  # past the TTL: only keep-alives explain it
            while time.monotonic() < deadline:
                assert vk.get("/alpha/w5/svc") == b"10.0.0.7:80"
                time.sleep(0.2)
            assert reg.lost == 0 and reg.error is None and reg.ttl == 2
        assert gone(vk, "/alpha/w5/svc")  # at once, not after the TTL


def test_a_value_written_with_a_ttl_disappears_by_itself(proxy):
    with client(proxy) as vk:
        vk.set("/alpha/w6/tmp", b"x", ttl="2s")
        written = time.monotonic()
        assert vk.get("/alpha/w6/tmp") == b"x"
        assert wait_until(lambda: gone(vk, "/alpha/w6/tmp"), timeout=5)
        assert time.monotonic() - written < 3.5
        with pytest.raises(vaultkey.UsageError, match="between 2 s and 24 h"):
            vk.set("/alpha/w6/tmp", b"x", ttl=1)


# -- the CLI ----------------------------------------------------------------------------

class Cli:
    """A long-running `vaultkey` subprocess; its stdout lines collected by a thread."""

    def __init__(self, proxy: Any, *args: str) -> None:
        self.proc = popen([sys.executable, "-m", "vaultkey", *args], env=proxy.env("alpha"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        _out, err = stop(self.proc, sig)
        return self.proc.returncode, (err or b"").decode()

    def __enter__(self) -> Cli:
        return self

    def __exit__(self, *exc: object) -> None:
        kill_tree(self.proc)


def test_cli_watch_prints_a_line_per_change_and_stops_on_sigterm(proxy):
    with client(proxy) as vk:
        start = vk.set("/alpha/c1/start", b"0")
        put = vk.set("/alpha/c1/a", b"line\x1b[31m")
        vk.delete("/alpha/c1/a")
        last = vk.set("/alpha/c1/b", b"B")
        with Cli(proxy, "watch", "--values", "--since", str(start), "/alpha/c1/") as cli:
            assert wait_until(lambda: len(cli.lines) >= 3, timeout=30)
            status, err = cli.stop()
    assert cli.lines[0] == f"put /alpha/c1/a {put} line\\x1b[31m"  # escaped, never run
    kind, path, revision = cli.lines[1].split(" ")
    assert (kind, path) == ("delete", "/alpha/c1/a") and put < int(revision) < last
    assert cli.lines[2] == f"put /alpha/c1/b {last} B"
    assert status == 143, err


def test_cli_watch_json_lines(proxy):
    with client(proxy) as vk:
        start = vk.set("/alpha/c2/start", b"0")
        rev = vk.set("/alpha/c2/bin", b"\xff\x00")
        with Cli(proxy, "watch", "-o", "json", "--values", "--since", str(start),
                 "/alpha/c2") as cli:
            assert wait_until(lambda: cli.lines, timeout=30)
            cli.stop(signal.SIGINT)
    doc = json.loads(cli.lines[0])
    assert doc == {"type": "put", "path": "/alpha/c2/bin", "revision": rev, "version": 1,
                   "create_revision": rev, "lease": None, "value": None,
                   "value_base64": "/wA="}
    assert cli.proc.returncode == 130


EXEC_SCRIPT = """
import os, sys
with open(sys.argv[1], "a") as out:
    out.write(os.environ["VAULTKEY_REVISION"] + " " + os.environ["VAULTKEY_RESYNC"] + " "
              + ",".join(os.environ["VAULTKEY_CHANGED"].split("\\n")) + "\\n")
"""


def test_cli_watch_exec_runs_once_per_burst_of_changes(proxy, tmp_path: Path):
    script, runs = tmp_path / "hook.py", tmp_path / "runs"
    script.write_text(EXEC_SCRIPT)
    with client(proxy) as vk:
        start = vk.set("/alpha/c3/start", b"0")
        burst = [vk.set(f"/alpha/c3/{i}", b"v") for i in range(5)]  # replayed at once
        command = f"{sys.executable} {script} {runs}"
        with Cli(proxy, "watch", "--exec", command, "--since", str(start), "/alpha/c3/") as cli:
            assert wait_until(runs.exists, timeout=30)
            later = vk.set("/alpha/c3/later", b"v")
            assert wait_until(lambda: len(runs.read_text().splitlines()) >= 2, timeout=30)
            status, err = cli.stop()
    assert runs.read_text().splitlines() == [
        f"{burst[-1]} 0 " + ",".join(f"/alpha/c3/{i}" for i in range(5)),
        f"{later} 0 /alpha/c3/later"]
    assert status == 143, err


def test_cli_register_deletes_the_key_at_once_on_sigterm(proxy):
    with client(proxy) as vk, Cli(proxy, "register", "/alpha/c4/svc", "here",
                                  "--ttl", "10s") as cli:
        assert wait_until(lambda: not gone(vk, "/alpha/c4/svc"), timeout=30)
        status, err = cli.stop(signal.SIGTERM)
        assert gone(vk, "/alpha/c4/svc")  # no waiting: the lease was revoked
    assert status == 0, err
    assert "registered /alpha/c4/svc (lease " in err and "ttl 10 s" in err


def test_cli_register_killed_leaves_a_key_that_goes_within_the_ttl(proxy):
    with client(proxy) as vk, Cli(proxy, "register", "/alpha/c5/svc", "here",
                                  "--ttl", "2s") as cli:
        assert wait_until(lambda: not gone(vk, "/alpha/c5/svc"), timeout=30)
        cli.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: gone(vk, "/alpha/c5/svc"), timeout=5)
        assert time.monotonic() - killed <= 3.0  # the TTL, plus 1 s


def test_cli_set_with_a_ttl(proxy):
    result = subprocess.run([sys.executable, "-m", "vaultkey", "set", "--ttl", "2s",
                             "/alpha/c6/tmp", "x"], capture_output=True, env=proxy.env("alpha"),
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert b"deleted after 2s" in result.stdout
    with client(proxy) as vk:
        assert wait_until(lambda: gone(vk, "/alpha/c6/tmp"), timeout=5)
    bad = subprocess.run([sys.executable, "-m", "vaultkey", "set", "--ttl", "1s",
                          "/alpha/c6/tmp", "x"], capture_output=True, env=proxy.env("alpha"),
                         timeout=60, check=False)
    assert bad.returncode == 64 and b"between 2 s and 24 h" in bad.stderr
