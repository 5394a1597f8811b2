"""The README's first command (scripts/demo runs scripts/demo.py) and the envelope demo work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_envelope_demo_passes_against_real_etcd(etcd_server):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/demo_envelope.py")],
                          capture_output=True, check=False, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo PASSED" in proc.stdout
    assert "eve   refused: no stanza for key" in proc.stdout
    assert "plaintext visible in etcd? False" in proc.stdout


def test_product_demo_on_vaultkey_dev_passes(etcd_server):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/demo.py")],
                          capture_output=True, check=False, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo PASSED" in proc.stdout
    assert "plaintext visible in etcd: False" in proc.stdout
    assert "-> exit 7" in proc.stdout
    assert "processes left behind: 0" in proc.stdout
