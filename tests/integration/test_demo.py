"""The README's first command (scripts/demo runs scripts/demo.py) and the envelope demo work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests._helpers.procs import kill_tree, popen

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, timeout: float) -> tuple[int, str, str]:
    """Run a demo script; on a timeout, kill it and what it started (a `vaultkey dev`)."""
    # SIGINT at its default (popen): the product demo stops `vaultkey dev` with Ctrl-C.
    proc = popen([sys.executable, str(ROOT / script)], stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_tree(proc)
    return proc.returncode, out, err


def test_envelope_demo_passes_against_real_etcd(etcd_server):
    code, out, err = _run("scripts/demo_envelope.py", timeout=120)
    assert code == 0, out + err
    assert "demo PASSED" in out
    assert "eve   refused: no stanza for key" in out
    assert "plaintext visible in etcd? False" in out


def test_product_demo_on_vaultkey_dev_passes(etcd_server):
    code, out, err = _run("scripts/demo.py", timeout=180)
    assert code == 0, out + err
    assert "demo PASSED" in out
    assert "plaintext visible in etcd: False" in out
    assert "-> exit 7" in out
    assert "processes left behind: 0" in out


def test_service_discovery_demo_passes(etcd_server):
    code, out, err = _run("scripts/demo_lb.py", timeout=180)
    assert code == 0, out + err
    assert "demo PASSED" in out
    assert "server a 127.0.0.1:9001" in out and "dropped it" in out


def test_backup_and_restore_rehearsal_reads_back_every_value(etcd_server):
    code, out, err = _run("scripts/rehearse_restore.py", timeout=180)
    assert code == 0, out + err
    assert "restore rehearsal PASSED" in out and "200/200 values read back" in out
