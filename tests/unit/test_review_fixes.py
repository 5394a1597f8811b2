"""Fixes for mismatches found while documenting the proxy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vaultkey._cli import main
from vaultkey.client.settings import resolve
from vaultkey.crypto import write_keypair
from vaultkey.errors import PolicyError
from vaultkey.policy.parse import parse_policy

ADMIN_TOKEN = "zR4tY7uI0oP3aS6dF9gH2jK5lZ8xC1vB4nM7q_w"


def test_list_on_a_key_rule_is_a_policy_error():
    with pytest.raises(PolicyError, match="never applies") as info:
        parse_policy('group = "g"\n[[rules]]\nkey = "/a/b"\nallow = ["list"]\n', "g.toml")
    assert info.value.line == 3


def test_explain_checks_list_on_the_prefix(tmp_path, capsys):
    (tmp_path / "g.toml").write_text(
        'group = "g"\nrecipients = ["g.pub"]\n[[rules]]\nprefix = "/a/"\nallow = ["list"]\n'
        '[[rules]]\nprefix = "/a/b/"\ndeny = ["list"]\n')
    write_keypair(tmp_path / "g")
    code = main(["policy", "explain", "--policies", str(tmp_path), "--group", "g", "/a/b", "list"])
    assert code == 4
    assert "prefix /a/b/ denies list" in capsys.readouterr().out


def test_env_token_beats_env_token_file(tmp_path):
    tf = tmp_path / "t"
    tf.write_text("from-file")
    s = resolve({}, env={"VAULTKEY_TOKEN": "from-env", "VAULTKEY_TOKEN_FILE": str(tf)},
                config_path="/dev/null")
    assert s.token == "from-env"


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
