"""What the SDK client accepts as its address and token, and where the token comes from."""

from __future__ import annotations

import pytest

import vaultkey
from vaultkey.client import Client
from vaultkey.client.settings import resolve


def test_env_token_beats_env_token_file(tmp_path):
    tf = tmp_path / "t"
    tf.write_text("from-file")
    s = resolve({}, env={"VAULTKEY_TOKEN": "from-env", "VAULTKEY_TOKEN_FILE": str(tf)},
                config_path="/dev/null")
    assert s.token == "from-env"


def test_token_with_control_characters_is_refused_without_echo():
    with pytest.raises(vaultkey.UsageError) as info:
        Client("https://127.0.0.1:1", "vkt_SECRET-ish\n")
    assert "SECRET" not in info.value.diagnostics()


@pytest.mark.parametrize("addr", ["http://10.0.0.5:8443", "http://vault.example.com",
                                  "ftp://x", "no-scheme"])
def test_plain_http_to_a_remote_proxy_is_refused(addr):
    with pytest.raises(vaultkey.UsageError):
        Client(addr, "t")


def test_plain_http_to_loopback_is_allowed():
    Client("http://127.0.0.1:8443", "t").close()
