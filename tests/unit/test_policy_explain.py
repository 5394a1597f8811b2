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
