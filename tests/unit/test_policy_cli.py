"""`vaultkey policy check` and `vaultkey policy explain`."""

from __future__ import annotations

import shutil
from pathlib import Path

from vaultkey._cli import main
from vaultkey.signkey import write_keypair

EXAMPLES = Path(__file__).resolve().parents[2] / "policies"


def _examples(tmp_path):
    for f in EXAMPLES.glob("*.toml"):
        shutil.copy(f, tmp_path / f.name)
    for group in ("payments", "web"):
        write_keypair(tmp_path / group)
    return tmp_path


def test_check_accepts_the_shipped_examples(tmp_path, capsys):
    assert main(["policy", "check", str(_examples(tmp_path))]) == 0
    assert "ok: 2 group(s): payments, web" in capsys.readouterr().out


def test_check_reports_file_and_line_for_each_problem(tmp_path, capsys):
    d = _examples(tmp_path)
    (d / "bad.toml").write_text('group = "bad"\n\n[[rules]]\nprefix = "/x/../y"\nallow = ["fly"]\n')
    assert main(["policy", "check", str(d)]) == 78
    err = capsys.readouterr().err
    assert "bad.toml:4" in err and "bad.toml:5" in err


def test_explain_prints_decision_and_rule(tmp_path, capsys):
    d = str(_examples(tmp_path))
    assert main(["policy", "explain", "--policies", d, "--group", "payments",
                 "/payments/db/password", "read"]) == 0
    assert "allow" in capsys.readouterr().out
    code = main(["policy", "explain", "--policies", d, "--group", "payments",
                 "/payments/ledger/q3", "write"])
    out = capsys.readouterr().out
    assert code == 4
    assert "deny" in out and "payments.toml" in out and "/payments/ledger/" in out


def test_explain_shows_the_groups_keyring(tmp_path, capsys):
    d = _examples(tmp_path)
    assert main(["policy", "explain", "--policies", str(d), "--group", "payments",
                 "/payments/db/password", "read"]) == 0
    assert "keyring of payments (one key): vk1_" in capsys.readouterr().out
    policy = (d / "payments.toml").read_text()
    write_keypair(d / "payments-2026")
    (d / "payments.toml").write_text(policy.replace('"payments.pub"',
                                                    '"payments.pub", "payments-2026.pub"'))
    assert main(["policy", "explain", "--policies", str(d), "--group", "payments",
                 "/payments/db/password", "read"]) == 0
    out = capsys.readouterr().out
    assert "keyring of payments (2 keys: a rotation is under way" in out
