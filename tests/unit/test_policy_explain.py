"""`vaultkey policy explain` decides a capability the way the proxy does."""

from __future__ import annotations

from vaultkey._cli import main
from vaultkey.signkey import write_keypair


def test_explain_checks_list_on_the_prefix(tmp_path, capsys):
    (tmp_path / "g.toml").write_text(
        'group = "g"\nrecipients = ["g.pub"]\n[[rules]]\nprefix = "/a/"\nallow = ["list"]\n'
        '[[rules]]\nprefix = "/a/b/"\ndeny = ["list"]\n')
    write_keypair(tmp_path / "g")
    code = main(["policy", "explain", "--policies", str(tmp_path), "--group", "g", "/a/b", "list"])
    assert code == 4
    assert "prefix /a/b/ denies list" in capsys.readouterr().out


def test_explain_shows_the_group_signers_and_the_signature_a_path_requires(tmp_path, capsys):
    from vaultkey.signkey import write_signing_keypair

    write_keypair(tmp_path / "g")
    write_signing_keypair(tmp_path / "ci")
    (tmp_path / "g.toml").write_text(
        'group = "g"\nrecipients = ["g.pub"]\nsigners = ["ci.sigpub"]\n[[rules]]\n'
        'prefix = "/g/"\nallow = ["read", "write"]\n[[rules]]\nprefix = "/g/conf/"\n'
        'require_signature = ["group:g"]\n')
    args = ["policy", "explain", "--policies", str(tmp_path), "--group", "g"]
    assert main([*args, "/g/conf/db", "write"]) == 0
    out = capsys.readouterr().out
    assert "signers of g: ci (vks1_" in out
    assert "signature: prefix /g/conf/ requires a signature by group:g (g.toml:7); " \
           "accepted writers: ci" in out
    assert main([*args, "/g/other", "write"]) == 0
    assert "signature:" not in capsys.readouterr().out
