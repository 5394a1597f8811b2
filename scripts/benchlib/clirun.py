"""Whole-process CLI timings: ``vaultkey get``, ``python -c pass`` and crypt's ``get``.

crypt (github.com/xordataexchange/crypt, Debian's golang-github-xordataexchange-crypt,
binary ``crypt-xordataexchange``) stores OpenPGP-encrypted values in etcd's v2 API, so it
gets its own etcd started with ``--enable-v2`` and a throwaway RSA key made by gpg in a
temporary GNUPGHOME (its gpg-agent is stopped afterwards). The commands are timed
interleaved, one run of each in turn.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchlib.stack import start_etcd

CRYPT = "crypt-xordataexchange"
CRYPT_DEB = "golang-github-xordataexchange-crypt"
GPG_KEY_PARAMS = """%no-protection
Key-Type: RSA
Key-Length: 2048
Subkey-Type: RSA
Subkey-Length: 2048
Name-Real: vaultkey bench
Name-Email: bench@example.invalid
Expire-Date: 0
%commit
"""


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str] | None = None
    expect: bytes | None = None  # what it must print (checked once, before timing)


def check(cmd: Command) -> None:
    first = subprocess.run(cmd.argv, env=cmd.env, capture_output=True, check=False, timeout=120)
    if first.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd.argv)} exited with {first.returncode}: "
                           f"{first.stderr.decode(errors='replace')[-2000:]}")
    if cmd.expect is not None and first.stdout.rstrip(b"\n") != cmd.expect:
        raise RuntimeError(f"{' '.join(cmd.argv)} printed {first.stdout[:100]!r}, not the value")


def timed_runs(cmds: dict[str, Command], n: int) -> dict[str, list[float]]:
    """Seconds of *n* runs of each command as a fresh process, interleaved (one of each in
    turn, so a noisy moment hits all of them alike); each is run and checked once first."""
    for cmd in cmds.values():
        check(cmd)
    out: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(n):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd.argv, env=cmd.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True, timeout=120)
            out[name].append(time.perf_counter() - t0)
    return out


def crypt_version() -> str | None:
    if shutil.which(CRYPT) is None:
        return None
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", CRYPT_DEB],
                       capture_output=True, text=True, check=False)
    return q.stdout.strip() or "unknown version"


def install_crypt() -> None:
    """apt-get install crypt (as root, or with sudo)."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", CRYPT_DEB], check=True, env=env,
                   stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def crypt_get(tmp: Path, value: bytes) -> Iterator[Command | str]:
    """``crypt-xordataexchange get`` of *value*, stored in a v2 etcd that runs meanwhile; or
    why it cannot run (a string)."""
    crypt, gpg = shutil.which(CRYPT), shutil.which("gpg")
    if crypt is None:
        yield "crypt not installed"
        return
    if gpg is None:
        yield "gpg not installed (needed for crypt's keyring)"
        return
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    genv = {**os.environ, "GNUPGHOME": str(home)}
    try:
        (tmp / "gpg-params").write_text(GPG_KEY_PARAMS)
        subprocess.run([gpg, "--batch", "--gen-key", str(tmp / "gpg-params")], env=genv,
                       check=True, capture_output=True, timeout=120)
        pub = subprocess.run([gpg, "--batch", "--armor", "--export"], env=genv, check=True,
                             capture_output=True).stdout
        sec = subprocess.run([gpg, "--batch", "--armor", "--export-secret-keys"], env=genv,
                             check=True, capture_output=True).stdout
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["gpgconf", "--kill", "all"], env=genv, capture_output=True,
                           timeout=30, check=False)
    (tmp / "pub.asc").write_bytes(pub)
    (tmp / "sec.asc").write_bytes(sec)
    (tmp / "sec.asc").chmod(0o600)
    (tmp / "value").write_bytes(value)
    etcd = start_etcd(tmp / "etcd-v2", extra_args=["--enable-v2"])
    try:
        subprocess.run([crypt, "set", "-endpoint", etcd.url, "-keyring", str(tmp / "pub.asc"),
                        "/bench/key", str(tmp / "value")], check=True, capture_output=True,
                       timeout=60)
        yield Command([crypt, "get", "-endpoint", etcd.url, "-secret-keyring",
                       str(tmp / "sec.asc"), "/bench/key"], expect=value)
    finally:
        etcd.stop()
