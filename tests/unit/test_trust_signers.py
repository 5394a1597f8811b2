"""Writer signers in the client's trust store (client/trust.py).

Run: ``pytest -q tests/unit/test_trust_signers.py``. A trust file names writers and where
their signature is required::

    signer release vksigpub1_...
    require-signature /app/ release

and a trust directory holds ``NAME.sigpub`` files and ``*.trust`` files of such lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vaultkey.client.trust import TrustStore
from vaultkey.errors import KeyFileError, UsageError
from vaultkey.keys import SigningPublicKey
from vaultkey.signkey import SigningKey, write_keypair, write_signing_keypair


@pytest.fixture(scope="module")
def release() -> SigningPublicKey:
    return SigningKey(bytes(range(1, 33))).public


@pytest.fixture(scope="module")
def ops() -> SigningPublicKey:
    return SigningKey(bytes(range(2, 34))).public


@pytest.fixture(scope="module")
def backup() -> SigningPublicKey:
    return SigningKey(bytes(range(3, 35))).public


def _store(*lines: str) -> TrustStore:
    return TrustStore.from_entries(lines, "trust.txt")


def test_signer_lines_name_writer_keys(release, ops) -> None:
    store = _store(f"signer release {release.to_text()}  # CI",
                   f"signer ops {ops.to_text()}")
    assert store.signers == (("release", release), ("ops", ops))
    assert len(store) == 0  # signers are not recipients
    assert store.writers_for("/app/x") is None  # listed, but nothing is required


def test_several_keys_may_share_a_signer_name(release, ops) -> None:
    store = _store(f"signer team {release.to_text()}", f"signer team {ops.to_text()}",
                   "require-signature /app/ team")
    writers = store.writers_for("/app/db")
    assert writers is not None
    assert set(writers.keys) == {release.kid, ops.kid}
    assert writers.names() == ["team"]


def test_writers_for_returns_the_named_writers_only(release, ops) -> None:
    store = _store(f"signer release {release.to_text()}", f"signer ops {ops.to_text()}",
                   "require-signature /app/ release")
    writers = store.writers_for("/app/db")
    assert writers is not None
    assert writers.names() == ["release"]
    assert writers.name_of(release.kid) == "release"
    assert writers.name_of(ops.kid) is None


def test_require_signature_may_name_several_writers(release, ops, backup) -> None:
    store = _store(f"signer release {release.to_text()}", f"signer ops {ops.to_text()}",
                   f"signer backup {backup.to_text()}", "require-signature /app/ release ops")
    writers = store.writers_for("/app/db")
    assert writers is not None
    assert writers.names() == ["ops", "release"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/app/db", ["release"]),
        ("/app/prod/db", ["ops"]),  # the longer prefix decides: a sub-tree names others
        ("/app/prod/deep/er", ["ops"]),
        ("/app/prod", ["ops"]),  # the key equal to the prefix without its slash
        ("/app", ["release"]),
        ("/app/production", ["release"]),  # a prefix matches whole segments only
        ("/apple/x", None),
        ("/other/x", None),
    ],
)
def test_the_longest_matching_prefix_decides(release, ops, path, expected) -> None:
    store = _store(f"signer release {release.to_text()}", f"signer ops {ops.to_text()}",
                   "require-signature /app/ release", "require-signature /app/prod ops")
    writers = store.writers_for(path)
    assert (None if writers is None else writers.names()) == expected


def test_a_key_given_as_prefix_is_normalised(release) -> None:
    store = _store(f"signer release {release.to_text()}", "require-signature /app/db release")
    assert store.required == {"/app/db/": ("release",)}
    assert store.writers_for("/app/db") is not None
    assert store.writers_for("/app/db/sub") is not None
    assert store.writers_for("/app/dbx") is None


def test_root_prefix_requires_signatures_everywhere(release) -> None:
    store = _store(f"signer release {release.to_text()}", "require-signature / release")
    for path in ("/a", "/a/b/c"):
        writers = store.writers_for(path)
        assert writers is not None and writers.names() == ["release"]


def test_signer_finds_trusted_writers_by_key_id(release, ops, backup) -> None:
    store = _store(f"signer release {release.to_text()}", f"signer ops {ops.to_text()}",
                   "require-signature /app/ release")
    assert store.signer(release.kid) == ("release", release)
    assert store.signer(ops.kid) == ("ops", ops)  # trusted, though required nowhere
    assert store.signer(backup.kid) is None


def test_require_signature_with_an_unknown_signer_is_refused(release) -> None:
    with pytest.raises(KeyFileError, match="unknown signer") as caught:
        _store(f"signer release {release.to_text()}", "require-signature /app/ release ghost")
    assert "ghost" in caught.value.message
    assert "release" not in caught.value.message.split("signer(s):")[1]
    with pytest.raises(KeyFileError, match=r"unknown signer.*ghost"):
        TrustStore([], "t", required={"/x/": ("ghost",)})


@pytest.mark.parametrize("prefix", ["app/", "/app/../x/", "/a//b/", "/a/+/"])
def test_an_invalid_prefix_is_refused_with_file_and_line(release, prefix) -> None:
    with pytest.raises(KeyFileError) as caught:
        _store("# writers", f"signer release {release.to_text()}",
               f"require-signature {prefix} release")
    assert caught.value.message.startswith("trust.txt:3: require-signature: ")


@pytest.mark.parametrize(
    "line",
    [
        "signer release",  # no key
        "signer bad/name {key}",  # not a valid name
        "signer release {key} more",  # too many words
        "require-signature /app/",  # no writer named
        "require-signatures /app/ release",
        "release {key}",
    ],
)
def test_a_malformed_line_is_refused(release, line) -> None:
    with pytest.raises(KeyFileError, match=r"trust\.txt:2: not a key id"):
        _store(f"signer release {release.to_text()}", line.format(key=release.to_text()))


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("signer release {key}", "wrong length"),  # truncated
        # An X25519 recipient key, not a signing key.
        ("signer release {recipient}", "this is a public key, but"),
        # No name: the key text is itself a valid name, so "extra" is read as the key.
        ("signer {key} extra", "not a vaultkey key"),
    ],
)
def test_a_signer_line_with_a_bad_key_is_refused(release, line, fragment) -> None:
    text = release.to_text()
    recipient = "vkpub1_" + text.split("_", 1)[1]
    key = text[:-2] if "release" in line else text
    with pytest.raises(KeyFileError, match=r"^trust\.txt:1: ") as caught:
        _store(line.format(key=key, recipient=recipient))
    assert fragment in caught.value.message


# --- directory form -------------------------------------------------------------------------

def test_directory_sigpub_files_are_signers_named_by_their_stem(tmp_path: Path) -> None:
    _, pub = write_signing_keypair(tmp_path / "release")
    (tmp_path / "release.sigkey").unlink()  # a trust store holds public keys only
    key = SigningPublicKey.load(pub)
    (tmp_path / "policy.trust").write_text("require-signature /app/ release\n")
    store = TrustStore.load(tmp_path)
    assert store.signers == (("release", key),)
    assert store.signer(key.kid) == ("release", key)
    writers = store.writers_for("/app/db")
    assert writers is not None and writers.names() == ["release"]
    assert store.writers_for("/other") is None


def test_directory_combines_pub_sigpub_and_trust_files(tmp_path: Path, ops) -> None:
    write_keypair(tmp_path / "reader")
    write_signing_keypair(tmp_path / "release")
    for secret in ("reader.key", "release.sigkey"):
        (tmp_path / secret).unlink()
    (tmp_path / "a.trust").write_text(f"# more writers\nsigner ops {ops.to_text()}\n")
    (tmp_path / "b.trust").write_text("require-signature /app/ release\n"
                                      "require-signature /app/ops/ ops release\n")
    store = TrustStore.load(tmp_path)
    assert len(store) == 1  # reader.pub
    assert [name for name, _ in store.signers] == ["release", "ops"]
    writers = store.writers_for("/app/ops/x")
    assert writers is not None and writers.names() == ["ops", "release"]
    writers = store.writers_for("/app/x")
    assert writers is not None and writers.names() == ["release"]


def test_directory_trust_file_naming_an_unknown_signer_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.trust").write_text("require-signature /app/ release\n")
    with pytest.raises(KeyFileError, match=r"unknown signer.*release") as caught:
        TrustStore.load(tmp_path)
    assert caught.value.hint is not None and ".sigpub" in caught.value.hint


def test_directory_with_a_bad_sigpub_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.sigpub").write_text("vksigpub1_AAAA\n")
    with pytest.raises(KeyFileError, match=r"broken\.sigpub"):
        TrustStore.load(tmp_path)


def test_directory_with_a_malformed_trust_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.trust").write_text("require-signature\n")
    with pytest.raises(KeyFileError, match="not a key id"):
        TrustStore.load(tmp_path)


def test_file_form_with_signers_loads_from_disk(tmp_path: Path, release) -> None:
    trust = tmp_path / "trust.txt"
    trust.write_text(f"signer release {release.to_text()}\nrequire-signature /app/ release\n")
    store = TrustStore.load(trust)
    writers = store.writers_for("/app/x")
    assert writers is not None and writers.names() == ["release"]
    trust.write_text(f"signer release {release.to_text()}\nrequire-signature app release\n")
    with pytest.raises(KeyFileError, match=r"trust\.txt:2: require-signature"):
        TrustStore.load(trust)


def test_a_missing_trust_store_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read trust store"):
        TrustStore.load(tmp_path / "nowhere")


def test_directory_errors_name_the_trust_file_and_its_own_line(tmp_path: Path, release) -> None:
    (tmp_path / "a.trust").write_text(f"signer rel {release.to_text()}\n# c\n")
    (tmp_path / "b.trust").write_text("require-signature /app/../x rel\n")
    with pytest.raises(KeyFileError) as caught:
        TrustStore.load(tmp_path)
    assert caught.value.message.startswith(f"{tmp_path / 'b.trust'}:1: require-signature:")


def test_one_prefix_on_several_lines_accepts_the_writers_of_each(tmp_path: Path, release,
                                                                  ops) -> None:
    (tmp_path / "a.trust").write_text(f"signer rel {release.to_text()}\n"
                                      f"signer ops {ops.to_text()}\n"
                                      "require-signature /app/ rel\n")
    (tmp_path / "b.trust").write_text("require-signature /app ops\n")
    store = TrustStore.load(tmp_path)
    writers = store.writers_for("/app/x")
    assert writers is not None and writers.names() == ["ops", "rel"]
    (tmp_path / "c.trust").write_text("require-signature /app/ ghost\n")
    with pytest.raises(KeyFileError, match="unknown signer"):
        TrustStore.load(tmp_path)  # a typo is refused, never silently dropped


def test_a_sigpub_file_name_must_be_a_signer_name(tmp_path: Path, release) -> None:
    (tmp_path / "my key.sigpub").write_text(release.to_file_text())
    with pytest.raises(KeyFileError, match="valid signer name"):
        TrustStore.load(tmp_path)
