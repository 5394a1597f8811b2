"""What `vaultkey serve` accepts as configuration: etcd endpoints and escrow keys."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vaultkey
from vaultkey.crypto import SecretKey
from vaultkey.proxy.state import load_escrow_keys
from vaultkey.proxy.store.etcdconn import parse_endpoint
from vaultkey.signkey import write_keypair

ADMIN_TOKEN = "zR4tY7uI0oP3aS6dF9gH2jK5lZ8xC1vB4nM7q_w"


def test_serve_config_file_accepts_an_etcd_array(tmp_path):
    (tmp_path / "g.toml").write_text('group = "g"\nrecipients = ["g.pub"]\n')
    write_keypair(tmp_path / "g")
    (tmp_path / "etc").mkdir()
    cfg = tmp_path / "etc" / "serve.toml"
    cfg.write_text(f'[serve]\npolicies = "{tmp_path}"\ninsecure = true\nlisten = "127.0.0.1:1"\n'
                   'etcd = ["https://etcd-a:2379", "https://u:p@etcd-b:2379"]\n')
    r = subprocess.run([sys.executable, "-m", "vaultkey", "serve", "--config", str(cfg)],
                       env={"PATH": "/usr/bin:/bin", "VAULTKEY_ADMIN_TOKEN": ADMIN_TOKEN},
                       capture_output=True, text=True, timeout=60, check=False)
    # Both endpoints were parsed as URLs: the second is refused for its credentials.
    assert r.returncode == 64 and "no credentials in an etcd endpoint" in r.stderr


def test_credentials_in_etcd_urls_are_refused():
    with pytest.raises(vaultkey.UsageError, match="no credentials"):
        parse_endpoint("https://root:pw@etcd:2379")


def test_escrow_key_given_as_secret_text_is_refused_without_echo():
    secret = SecretKey.generate().to_text()
    with pytest.raises(vaultkey.KeyFileError) as info:
        load_escrow_keys([secret])
    assert secret not in info.value.diagnostics()
    assert "secret key" in info.value.diagnostics()
