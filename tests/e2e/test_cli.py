"""The real CLI as a subprocess against a real TLS proxy and a real etcd."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_for
from vaultkey.crypto import decrypt, encrypt


def vk(proxy, group, *args: str, stdin: bytes = b"",
       **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "vaultkey", *args], input=stdin,
                          capture_output=True, env=proxy.env(group, **env), timeout=60,
                          check=False)


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_set_and_get_binary_from_stdin_byte_exact(proxy):
    value = bytes(range(256)) * 3
    ok(vk(proxy, "alpha", "set", "/alpha/bin", stdin=value))
    assert ok(vk(proxy, "alpha", "get", "/alpha/bin")) == value


def test_trailing_newline_is_kept_and_nothing_is_added(proxy):
    ok(vk(proxy, "alpha", "set", "/alpha/nl", "-", stdin=b"line one\n"))
    assert ok(vk(proxy, "alpha", "get", "/alpha/nl")) == b"line one\n"
    ok(vk(proxy, "alpha", "set", "/alpha/nonl", "no newline"))
    assert ok(vk(proxy, "alpha", "get", "/alpha/nonl")) == b"no newline"


def test_set_from_file_and_empty_value(proxy, tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(b"\x00file\xff")
    ok(vk(proxy, "alpha", "set", "/alpha/file", "--file", str(f)))
    assert ok(vk(proxy, "alpha", "get", "/alpha/file")) == b"\x00file\xff"
    ok(vk(proxy, "alpha", "set", "/alpha/empty", "-", stdin=b""))
    assert ok(vk(proxy, "alpha", "get", "/alpha/empty")) == b""


def test_get_json_output(proxy):
    ok(vk(proxy, "alpha", "set", "/alpha/j", "text value"))
    doc = json.loads(ok(vk(proxy, "alpha", "get", "-o", "json", "/alpha/j")))
    assert doc["value"] == "text value" and doc["value_base64"] == "dGV4dCB2YWx1ZQ=="
    assert doc["recipients"] == [proxy.keys["alpha"].key_id]
    assert doc["revision"] >= doc["create_revision"] > 0


def test_other_groups_prefix_is_permission_denied(proxy):
    r = vk(proxy, "alpha", "get", "/beta/secret")
    assert r.returncode == 4
    assert b"may not read /beta/secret" in r.stderr
    assert vk(proxy, "alpha", "set", "/beta/secret", "x").returncode == 4


def test_a_key_cannot_decrypt_b_ciphertext_even_when_handed_the_envelope(proxy):
    # beta's value, encrypted only for beta, planted where alpha may read it
    # (as a compromised etcd or a rogue writer could do).
    env = encrypt(b"beta only", "/beta/public/motd", [proxy.keys["beta"].public])
    proxy.store().put("/beta/public/motd", env)
    r = vk(proxy, "alpha", "get", "/beta/public/motd")
    assert r.returncode == 7
    assert b"no stanza for key " + proxy.keys["alpha"].key_id.encode() in r.stderr
    assert b"Traceback" not in r.stderr
    with pytest.raises(Exception, match="no stanza"):
        decrypt(env, "/beta/public/motd", proxy.keys["alpha"])


def test_shared_path_is_readable_by_both_groups_with_recipients_from_policy(proxy):
    ok(vk(proxy, "alpha", "set", "/shared/alpha/both", "for alpha and beta"))
    assert ok(vk(proxy, "beta", "get", "/shared/alpha/both")) == b"for alpha and beta"
    assert ok(vk(proxy, "alpha", "get", "/shared/alpha/both")) == b"for alpha and beta"
    doc = json.loads(ok(vk(proxy, "beta", "get", "-o", "json", "/shared/alpha/both")))
    assert sorted(doc["recipients"]) == sorted(proxy.keys[g].key_id for g in ("alpha", "beta"))


def test_ls_shows_children_or_everything(proxy):
    for p in ["/alpha/ls/a", "/alpha/ls/b/c", "/alpha/ls/b/d"]:
        ok(vk(proxy, "alpha", "set", p, "v"))
    assert ok(vk(proxy, "alpha", "ls", "/alpha/ls")).decode().split() == ["/alpha/ls/a",
                                                                        "/alpha/ls/b/"]
    assert ok(vk(proxy, "alpha", "ls", "-r", "/alpha/ls/")).decode().split() == [
        "/alpha/ls/a", "/alpha/ls/b/c", "/alpha/ls/b/d"]
    doc = json.loads(ok(vk(proxy, "alpha", "ls", "-r", "-o", "json", "/alpha/ls/")))
    assert doc["keys"][0] == "/alpha/ls/a"


def test_rm_and_whoami(proxy):
    ok(vk(proxy, "alpha", "set", "/alpha/gone", "v"))
    ok(vk(proxy, "alpha", "rm", "/alpha/gone"))
    assert vk(proxy, "alpha", "get", "/alpha/gone").returncode == 3
    me = json.loads(ok(vk(proxy, "alpha", "whoami", "-o", "json")))
    assert me["group"] == "alpha" and me["kind"] == "group"


# --- every documented exit code ------------------------------------------------

def test_exit_0_success(proxy):
    assert vk(proxy, "alpha", "whoami").returncode == 0


def test_exit_3_not_found(proxy):
    r = vk(proxy, "alpha", "get", "/alpha/never")
    assert r.returncode == 3 and b"not found" in r.stderr


def test_exit_4_permission_denied(proxy):
    assert vk(proxy, "beta", "ls", "/alpha/").returncode == 4


def test_exit_5_not_authenticated(proxy):
    r = vk(proxy, "alpha", "whoami", VAULTKEY_TOKEN="vkt_0000000000000000." + "A" * 43)
    assert r.returncode == 5 and b"invalid or revoked token" in r.stderr


def test_exit_6_conflict(proxy):
    ok(vk(proxy, "alpha", "set", "/alpha/once", "1", "--create-only"))
    r = vk(proxy, "alpha", "set", "/alpha/once", "2", "--create-only")
    assert r.returncode == 6 and b"already exists" in r.stderr
    assert vk(proxy, "alpha", "set", "/alpha/once", "3", "--if-revision", "1").returncode == 6
    assert ok(vk(proxy, "alpha", "get", "/alpha/once")) == b"1"


def test_exit_7_decryption_failed(proxy):
    env = encrypt(b"x", "/alpha/foreign", [proxy.keys["beta"].public])
    proxy.store().put("/alpha/foreign", env)
    assert vk(proxy, "alpha", "get", "/alpha/foreign").returncode == 7


def test_exit_8_unavailable():
    from vaultkey._dev.etcdproc import free_port

    r = subprocess.run([sys.executable, "-m", "vaultkey", "--addr",
                        f"https://127.0.0.1:{free_port()}", "--token", "t", "whoami"],
                       capture_output=True, timeout=60, check=False)
    assert r.returncode == 8 and b"cannot reach the vaultkey proxy" in r.stderr


def test_exit_9_untrusted_recipient(proxy, tmp_path):
    only_alpha = tmp_path / "trust"
    only_alpha.mkdir()
    (only_alpha / "alpha.pub").write_bytes((proxy.policy_dir / "alpha.pub").read_bytes())
    r = vk(proxy, "alpha", "set", "/shared/alpha/t", "v", VAULTKEY_TRUST=str(only_alpha))
    assert r.returncode == 9
    assert proxy.keys["beta"].key_id.encode() in r.stderr


def test_exit_64_usage_error(proxy):
    assert vk(proxy, "alpha", "get", "relative/path").returncode == 64
    assert vk(proxy, "alpha", "get").returncode == 64
    assert vk(proxy, "alpha", "frobnicate").returncode == 64


def test_exit_65_envelope_rejected(proxy):
    # explicit recipients that leave out a reader group: the proxy's write check refuses it
    r = vk(proxy, "alpha", "set", "/shared/alpha/x", "v", "--recipient",
           str(proxy.policy_dir / "alpha.pub"))
    assert r.returncode == 65 and b"missing: beta" in r.stderr


def test_exit_66_key_file_problem(proxy, tmp_path):
    loose = tmp_path / "loose.key"
    loose.write_bytes(proxy.key_path("alpha").read_bytes())
    loose.chmod(0o644)
    ok(vk(proxy, "alpha", "set", "/alpha/k66", "v"))
    r = vk(proxy, "alpha", "get", "/alpha/k66", VAULTKEY_KEY=str(loose))
    assert r.returncode == 66 and b"chmod 600" in r.stderr


def test_exit_78_invalid_policy(tmp_path):
    (tmp_path / "bad.toml").write_text('group = "x"\nbogus = 1\n')
    r = subprocess.run([sys.executable, "-m", "vaultkey", "policy", "check", str(tmp_path)],
                       capture_output=True, timeout=60, check=False)
    assert r.returncode == 78 and b"bad.toml:2" in r.stderr


def test_exit_130_interrupted(proxy):
    proc = subprocess.Popen([sys.executable, "-m", "vaultkey", "set", "/alpha/int"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=proxy.env("alpha"))
    # Wait until it blocks reading stdin (its main() is running), then interrupt it.
    # Where the kernel hides wchan ("0"), fall back to a generous fixed wait.
    wchan = Path(f"/proc/{proc.pid}/wchan")
    if not wait_for(lambda: "pipe" in wchan.read_text(), timeout=10):
        time.sleep(2.0)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err


def test_every_command_has_help_with_examples():
    import click

    from vaultkey._cli.common import cli

    def walk(group: click.Group, prefix: list[str]):
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                yield from walk(cmd, [*prefix, name])
            else:
                yield [*prefix, name]

    commands = list(walk(cli, []))
    assert len(commands) >= 14
    for cmd in commands:
        r = subprocess.run([sys.executable, "-m", "vaultkey", *cmd, "--help"],
                           capture_output=True, timeout=60, check=False)
        assert r.returncode == 0 and b"Example" in r.stdout, cmd


def test_shell_completion_scripts():
    for shell in ("bash", "zsh", "fish"):
        r = subprocess.run([sys.executable, "-m", "vaultkey", "completion", shell],
                           capture_output=True, timeout=60, check=False)
        assert r.returncode == 0 and b"_VAULTKEY_COMPLETE" in r.stdout, shell


def test_reader_that_goes_away_ends_get_quietly_with_141(proxy):
    ok(vk(proxy, "alpha", "set", "/alpha/big-for-pipe", "-", stdin=b"x" * 1_000_000))
    r = subprocess.run(
        f"{sys.executable} -m vaultkey get /alpha/big-for-pipe | "
        f"{sys.executable} -c 'import os; os.read(0, 10)'; "
        "echo ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
        env=proxy.env("alpha"), timeout=60, check=False)
    assert r.stdout.strip() == b"141", r.stderr
    assert b"Traceback" not in r.stderr


def test_closed_stdout_or_stdin_are_clear_errors(proxy):
    ok(vk(proxy, "alpha", "set", "/alpha/closed", "v"))
    r = subprocess.run(f"{sys.executable} -m vaultkey get /alpha/closed >&-", shell=True,
                       capture_output=True, env=proxy.env("alpha"), timeout=60, check=False)
    assert r.returncode == 64 and b"stdout is closed" in r.stderr
    r = subprocess.run(f"{sys.executable} -m vaultkey set /alpha/closed2 <&-", shell=True,
                       capture_output=True, env=proxy.env("alpha"), timeout=60, check=False)
    assert r.returncode == 64 and b"stdin is closed" in r.stderr


def test_non_utf8_value_argument_is_stored_byte_exactly(proxy):
    raw = b"caf\xe9-latin1"
    r = subprocess.run([sys.executable.encode(), b"-m", b"vaultkey", b"set", b"/alpha/latin1",
                        raw], capture_output=True, env=proxy.env("alpha"), timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert ok(vk(proxy, "alpha", "get", "/alpha/latin1")) == raw


def test_cli_commands_do_not_import_httpx(proxy):
    """The CLI sends its requests with http.client (httpx alone costs ~40 ms to import)."""
    ok(vk(proxy, "alpha", "set", "/alpha/lite", "v"))
    probe = ("import sys; from vaultkey._cli import main; rc = main(['get', '/alpha/lite']); "
             "sys.stdout.flush(); print(); print(rc, 'httpx' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True,
                       env=proxy.env("alpha"), timeout=60, check=False)
    assert r.stdout.splitlines()[-1] == b"0 False", r.stdout + r.stderr


def test_exit_1_when_the_server_is_not_a_vaultkey_proxy(tmp_path):
    from vaultkey._dev.etcdproc import free_port

    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                            "127.0.0.1", "--directory", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        assert wait_for(lambda: _answers(httpx, port))
        r = subprocess.run([sys.executable, "-m", "vaultkey", "--addr",
                            f"http://127.0.0.1:{port}", "--token", "t", "whoami"],
                           capture_output=True, timeout=60, check=False,
                           env={"PATH": "/usr/bin:/bin", "VAULTKEY_CONFIG": "/dev/null"})
    finally:
        web.terminate()
        web.wait(10)
    assert r.returncode == 1
    assert b"not a vaultkey answer" in r.stderr and b"Traceback" not in r.stderr


def _answers(httpx, port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/")
        return True
    except httpx.TransportError:
        return False
