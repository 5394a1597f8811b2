"""Key files: permissions, formats and clear errors."""

from __future__ import annotations

import os
import re
import stat

import pytest

from vaultkey._cli import main
from vaultkey.crypto import SecretKey
from vaultkey.errors import KeyFileError
from vaultkey.keys import PublicKey
from vaultkey.signkey import write_keypair


def test_keygen_writes_secret_with_mode_0600_and_public_file(tmp_path, capsys):
    assert main(["keygen", str(tmp_path / "payments")]) == 0
    key, pub = tmp_path / "payments.key", tmp_path / "payments.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = SecretKey.load(key)
    out = capsys.readouterr().out
    assert loaded.key_id in out
    assert f"# key id: {loaded.key_id}" in pub.read_text()
    assert PublicKey.load(pub) == loaded.public


def test_secret_is_0600_even_with_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        key, _ = write_keypair(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_keygen_refuses_to_overwrite(tmp_path, capsys):
    write_keypair(tmp_path / "k")
    before = (tmp_path / "k.key").read_text()
    assert main(["keygen", str(tmp_path / "k")]) == KeyFileError.exit_code
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "k.key").read_text() == before


@pytest.mark.parametrize("kind", ["decryption", "signing"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secret_key_readable_by_others_is_refused_with_fix(tmp_path, mode, kind):
    from vaultkey.signkey import SigningKey, write_signing_keypair

    write, load = ((write_keypair, SecretKey.load) if kind == "decryption"
                   else (write_signing_keypair, SigningKey.load))
    key, _ = write(tmp_path / "k")
    key.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load(key)
    assert f"{mode:04o}" in info.value.message
    assert f"chmod 600 {key}" in info.value.diagnostics()


def test_secret_key_0400_is_accepted(tmp_path):
    key, _ = write_keypair(tmp_path / "k")
    key.chmod(0o400)
    SecretKey.load(key)


def _key_line(path):
    return next(ln for ln in path.read_text().splitlines() if not ln.startswith("#"))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: s[:-5], "wrong length"),
        (lambda s: s[:20] + ("A" if s[20] != "A" else "B") + s[21:], "checksum mismatch"),
        (lambda s: s.replace("vksec1_", "vksec2_"), "not a vaultkey key"),
        (lambda s: s.replace("vksec1_", "vkpub1_"), "this is a public key"),
        (lambda s: s[:30] + "!!" + s[32:], "corrupted"),
        (lambda s: "", "no key found"),
        (lambda s: s + "\n" + s, "more than one key line"),
    ],
)
def test_corrupted_secret_key_text_gives_clear_error(tmp_path, mangle, message):
    key, _ = write_keypair(tmp_path / "k")
    key.write_text(mangle(_key_line(key)) + "\n")
    with pytest.raises(KeyFileError, match=message):
        SecretKey.load(key)


def test_public_key_file_used_as_secret_is_named(tmp_path):
    _, pub = write_keypair(tmp_path / "k")
    pub.chmod(0o600)
    with pytest.raises(KeyFileError, match="this is a public key, but a secret key is needed"):
        SecretKey.load(pub)


def test_corrupted_public_key_gives_clear_error(tmp_path):
    _, pub = write_keypair(tmp_path / "k")
    line = _key_line(pub)
    pub.write_text(line[:-1] + ("x" if line[-1] != "x" else "y") + "\n")
    with pytest.raises(KeyFileError, match="checksum mismatch"):
        PublicKey.load(pub)


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="cannot open secret key file"):
        SecretKey.load(tmp_path / "absent.key")


def test_binary_garbage_key_file_is_a_clear_error(tmp_path):
    path = tmp_path / "g.key"
    path.write_bytes(b"\xff\xfe\x00garbage")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not UTF-8"):
        SecretKey.load(path)


def test_key_text_round_trips():
    sk = SecretKey.generate()
    assert SecretKey.from_text(sk.to_text()).public == sk.public
    assert PublicKey.from_text(sk.public.to_text()) == sk.public
    assert sk.key_id.startswith("vk1_") and len(sk.key_id) == 36


# --- strict key text (docs/FORMAT.md section 2); tests/vectors/key_text_v1_negative.json
# holds one vector per rule, these pin the details.

_DASHES = PublicKey(bytes([0xFB, 0xEF, 0xBE]) * 10 + b"\x00\x00")  # text has '-' runs
_UNDERS = PublicKey(bytes([0xFF]) * 32)  # text has '_' runs


def test_standard_base64_spelling_of_a_valid_key_is_refused_with_a_hint():
    # A lenient decoder maps '+' to '-' and '/' to '_', so these would name the same
    # key with a valid checksum: one key must have exactly one spelling.
    for pk, good, bad in ((_DASHES, "-", "+"), (_UNDERS, "_", "/")):
        text = pk.to_text()
        tag, body = text.split("_", 1)
        assert good in body
        with pytest.raises(KeyFileError, match="not a base64url character") as info:
            PublicKey.from_text(tag + "_" + body.replace(good, bad))
        assert "'-' and '_'" in info.value.diagnostics()


@pytest.mark.parametrize("suffix", ["=", "==", "===", "===="])
def test_padding_is_refused(suffix):
    for text, cls in ((_DASHES.to_text(), PublicKey), (SecretKey.generate().to_text(), SecretKey)):
        with pytest.raises(KeyFileError, match="'=' padding is not allowed"):
            cls.from_text(text + suffix)


@pytest.mark.parametrize(
    ("junk", "shown"),
    [(" ", "' ' (U+0020)"), ("\t", "U+0009"), ("!", "'!' (U+0021)"), ("*", "'*' (U+002A)"),
     ("\u00e9", "'é' (U+00E9)"), ("\x00", "U+0000"), ("\u200b", "U+200B"), ("\x0c", "U+000C")],
)
def test_inner_junk_is_refused_naming_character_and_column(junk, shown):
    text = _DASHES.to_text()
    with pytest.raises(KeyFileError, match="is not a base64url character") as info:
        PublicKey.from_text(text[:25] + junk + text[25:])
    assert f"{shown} at column 26 " in info.value.message


def test_errors_never_echo_secret_key_text():
    text = SecretKey.generate().to_text()
    body = text.removeprefix("vksec1_")
    for bad in (text + "=", text[:20] + "+" + text[21:], text[:-1], text[:-1] + "?",
                text[:30] + " " + text[30:], "vkpub1_" + body):
        with pytest.raises(KeyFileError) as info:
            SecretKey.from_text(bad)
        shown = info.value.diagnostics()
        assert not any(body[i : i + 6] in shown for i in range(len(body) - 5)), shown


@pytest.mark.parametrize(
    "wrap",
    [
        lambda t: f"  {t}  ",
        lambda t: f"\t{t}\t",
        lambda t: f"{t}\r\n",
        lambda t: f"# c\r\n\r\n{t}\r\n",
        lambda t: f"\n\n   # indented comment\n {t}\n\n",
    ],
)
def test_only_spaces_tabs_and_cr_around_a_line_are_ignored(wrap):
    sk = SecretKey.generate()
    assert PublicKey.from_text(wrap(sk.public.to_text())) == sk.public
    assert SecretKey.from_text(wrap(sk.to_text())).public == sk.public


@pytest.mark.parametrize(
    ("wrap", "message"),
    [
        (lambda t: "\ufeff" + t, "not a vaultkey key"),  # byte-order mark
        (lambda t: "\u00a0" + t, "not a vaultkey key"),  # no-break space
        (lambda t: "\u3000" + t, "not a vaultkey key"),  # ideographic space
        (lambda t: t + "\u00a0", "U+00A0"),
        (lambda t: t + "\x0b", "U+000B"),  # vertical tab is not a line break here
        (lambda t: t + "\x0c", "U+000C"),
        (lambda t: t + "\x85", "U+0085"),  # nor is NEL
        (lambda t: t + "\u2028", "U+2028"),
        (lambda t: t + " # my key", "' ' (U+0020)"),  # no trailing comments
        (lambda t: "# c\x0c" + t, "no key found"),  # one comment line, not two lines
        (lambda t: "# c\r" + t, "no key found"),  # a lone CR does not end a line
    ],
)
def test_other_whitespace_and_line_breaks_are_not_trimmed(wrap, message):
    with pytest.raises(KeyFileError, match=re.escape(message)):
        PublicKey.from_text(wrap(_DASHES.to_text()))


def test_secret_key_file_with_crlf_and_padding(tmp_path):
    key, _ = write_keypair(tmp_path / "k")
    line = _key_line(key)
    key.write_bytes(f"# comment\r\n{line}\r\n".encode())
    assert SecretKey.load(key).to_text() == line
    key.write_text(line + "==\n")
    with pytest.raises(KeyFileError, match="padding is not allowed"):
        SecretKey.load(key)


def test_forced_keygen_does_not_follow_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "k.key").symlink_to(victim)
    with pytest.raises(KeyFileError):
        write_keypair(tmp_path / "k")
    write_keypair(tmp_path / "k", force=True)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "k.key").is_symlink()


def test_loading_a_directory_or_symlink_as_key_is_a_key_file_error(tmp_path):
    (tmp_path / "d.key").mkdir()
    with pytest.raises(KeyFileError):
        SecretKey.load(tmp_path / "d.key")
    key, _ = write_keypair(tmp_path / "real")
    os.symlink(key, tmp_path / "link.key")
    with pytest.raises(KeyFileError):
        SecretKey.load(tmp_path / "link.key")
