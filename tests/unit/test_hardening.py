"""Unit-level regression tests from the security review."""

from __future__ import annotations

import os

import pytest

import vaultkey
from vaultkey.client import Client
from vaultkey.crypto import SecretKey, write_keypair
from vaultkey.proxy.state import load_escrow_keys
from vaultkey.proxy.store.etcd import parse_endpoint


def test_escrow_key_given_as_secret_text_is_refused_without_echo():
    secret = SecretKey.generate().to_text()
    with pytest.raises(vaultkey.KeyFileError) as info:
        load_escrow_keys([secret])
    assert secret not in info.value.diagnostics()
    assert "secret key" in info.value.diagnostics()


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


def test_forced_keygen_does_not_follow_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "k.key").symlink_to(victim)
    with pytest.raises(vaultkey.KeyFileError):
        write_keypair(tmp_path / "k")
    write_keypair(tmp_path / "k", force=True)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "k.key").is_symlink()


def test_loading_a_directory_or_symlink_as_key_is_a_key_file_error(tmp_path):
    (tmp_path / "d.key").mkdir()
    with pytest.raises(vaultkey.KeyFileError):
        SecretKey.load(tmp_path / "d.key")
    key, _ = write_keypair(tmp_path / "real")
    os.symlink(key, tmp_path / "link.key")
    with pytest.raises(vaultkey.KeyFileError):
        SecretKey.load(tmp_path / "link.key")


def test_credentials_in_etcd_urls_are_refused():
    with pytest.raises(vaultkey.UsageError, match="no credentials"):
        parse_endpoint("https://root:pw@etcd:2379")
