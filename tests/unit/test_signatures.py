"""Writer signatures (docs/FORMAT.md sections 2.2, 5 and 6): signing keys, Writers, signing
and rewrapping. tests/vectors/ holds the known answers; these are the behaviours around them."""

from __future__ import annotations

import dataclasses
import stat

import pytest

from vaultkey.crypto import SecretKey, decrypt, encrypt, rewrap, sign_envelope
from vaultkey.envelope import Envelope, Signature
from vaultkey.errors import DecryptionError, KeyFileError, SignatureError
from vaultkey.keys import SigningPublicKey, format_key_id, key_id_bytes
from vaultkey.signatures import Writers, signature_valid
from vaultkey.signkey import SigningKey, write_signing_keypair

PATH = "/app/release/token"
NOT_SIGNED = "the value is not signed, but this path requires a writer signature"
FORGED = "the writer signature does not verify (forged, or altered after signing)"


@pytest.fixture(scope="module")
def alice() -> SecretKey:
    return SecretKey(bytes(range(32)))


@pytest.fixture(scope="module")
def release() -> SigningKey:
    return SigningKey(bytes(range(1, 33)))


@pytest.fixture(scope="module")
def mallory() -> SigningKey:
    return SigningKey(bytes(range(2, 34)))


def _signed(alice: SecretKey, signer: SigningKey, path: str = PATH) -> Envelope:
    return Envelope.parse(encrypt(b"v1.2.3", path, [alice.public], signer=signer))


def _unsigned(alice: SecretKey) -> Envelope:
    return Envelope.parse(encrypt(b"v1.2.3", PATH, [alice.public]))


# --- Writers.problem ------------------------------------------------------------------------

def test_problem_is_none_for_a_trusted_valid_signature(alice, release, mallory):
    env = _signed(alice, release)
    assert Writers.of([("release", release.public)]).problem(env) is None
    assert Writers.of([("mallory", mallory.public), ("release", release.public)]).problem(
        env) is None


def test_problem_unsigned(alice, release):
    assert Writers.of([("release", release.public)]).problem(_unsigned(alice)) == NOT_SIGNED


def test_problem_untrusted_signer_is_named_by_its_key_id(alice, release, mallory):
    problem = Writers.of([("release", release.public)]).problem(_signed(alice, mallory))
    assert problem == (f"the value is signed by {mallory.key_id}, which is not a trusted "
                       "writer for this path")


def test_problem_with_no_trusted_writer_refuses_everything(alice, release):
    nobody = Writers.of([])
    assert nobody.names() == []
    assert nobody.problem(_unsigned(alice)) == NOT_SIGNED
    assert "not a trusted writer" in (nobody.problem(_signed(alice, release)) or "")


def test_problem_forged_signature(alice, release):
    env = _signed(alice, release)
    assert env.signature is not None
    sig = env.signature.signature
    bad = dataclasses.replace(env, signature=Signature(env.signature.signer_kid,
                                                       bytes([sig[0] ^ 1]) + sig[1:]))
    assert Writers.of([("release", release.public)]).problem(bad) == FORGED


def test_problem_signature_by_another_key_under_a_trusted_kid(alice, release, mallory):
    # The signer_kid only picks a key the verifier holds; mallory's signature under
    # release's kid is checked with release's key, and fails.
    env = _signed(alice, mallory)
    assert env.signature is not None
    relabelled = dataclasses.replace(
        env, signature=Signature(release.public.kid, env.signature.signature))
    assert Writers.of([("release", release.public)]).problem(relabelled) == FORGED
    assert not signature_valid(relabelled, release.public)


def test_problem_changed_after_signing(alice, release):
    env = _signed(alice, release)
    writers = Writers.of([("release", release.public)])
    assert writers.problem(dataclasses.replace(env, counter=env.counter + 1)) == FORGED
    ct = env.ciphertext
    assert writers.problem(dataclasses.replace(env, ciphertext=bytes([ct[0] ^ 1]) + ct[1:])) == (
        FORGED)


def test_writers_of_names_and_duplicates(release, mallory):
    writers = Writers.of([("release", release.public), ("ci", release.public),
                          ("mallory", mallory.public)])
    assert writers.names() == ["mallory", "release"]  # one key, first name kept
    assert writers.name_of(release.public.kid) == "release"
    assert writers.name_of(bytes(16)) is None


def test_signature_valid(alice, release, mallory):
    env = _signed(alice, release)
    assert signature_valid(env, release.public)
    assert not signature_valid(env, mallory.public)
    assert not signature_valid(_unsigned(alice), release.public)


def test_decrypt_raises_signature_error_which_is_a_decryption_error(alice, release, mallory):
    blob = encrypt(b"v1.2.3", PATH, [alice.public], signer=mallory)
    with pytest.raises(SignatureError) as info:
        decrypt(blob, PATH, alice, writers=Writers.of([("release", release.public)]))
    assert isinstance(info.value, DecryptionError)
    assert decrypt(blob, PATH, alice) == b"v1.2.3"  # no trust store: not checked


# --- sign_envelope --------------------------------------------------------------------------

def test_sign_envelope_refuses_an_envelope_sealed_unsigned(alice, release):
    with pytest.raises(ValueError, match="sealed unsigned"):
        sign_envelope(_unsigned(alice), release)


def test_sign_envelope_resigns_an_envelope_sealed_signed(alice, release, mallory):
    # Flags bit 0 is already in the authenticated header: another writer's signature
    # replaces the block and the value still opens.
    env = sign_envelope(_signed(alice, mallory), release)
    assert env.signature is not None and env.signature.signer_kid == release.public.kid
    blob = env.serialize()
    assert decrypt(blob, PATH, alice, writers=Writers.of([("release", release.public)])) == (
        b"v1.2.3")


def test_signatures_are_deterministic(release):
    assert release.sign(b"message") == release.sign(b"message")
    assert release.sign(b"message") != release.sign(b"message!")


# --- rewrap ---------------------------------------------------------------------------------

def test_rewrap_keeps_the_data_key_with_a_fresh_nonce(alice, release):
    bob, carol = SecretKey.generate(), SecretKey.generate()
    old_blob = encrypt(b"s3cret", PATH, [alice.public, bob.public], counter=5)
    new_blob = rewrap(old_blob, PATH, alice, [alice.public, carol.public], counter=6,
                      signer=release)
    old, new = Envelope.parse(old_blob), Envelope.parse(new_blob)
    assert new.commitment == old.commitment  # same data key
    assert new.nonce != old.nonce
    assert new.ciphertext != old.ciphertext
    assert new.counter == 6
    assert set(new.recipient_kids) == {alice.public.kid, carol.public.kid}
    assert new.stanza_for(alice.public.kid) != old.stanza_for(alice.public.kid)  # new stanza
    writers = Writers.of([("release", release.public)])
    for reader in (alice, carol):
        assert decrypt(new_blob, PATH, reader, writers=writers) == b"s3cret"
    with pytest.raises(DecryptionError, match="no stanza"):
        decrypt(new_blob, PATH, bob)
    assert decrypt(old_blob, PATH, bob) == b"s3cret"  # the old value is unchanged


def test_rewrap_with_a_keyring_uses_the_key_that_opens_it(alice):
    other, bob = SecretKey.generate(), SecretKey.generate()
    blob = encrypt(b"s3cret", PATH, [alice.public])
    new_blob = rewrap(blob, PATH, [other, alice], [bob.public], counter=1)
    assert decrypt(new_blob, PATH, bob) == b"s3cret"
    assert Envelope.parse(new_blob).signature is None


def test_rewrap_refuses_what_the_key_cannot_open_or_another_path(alice):
    blob = encrypt(b"s3cret", PATH, [alice.public])
    with pytest.raises(DecryptionError, match="no stanza"):
        rewrap(blob, PATH, SecretKey.generate(), [alice.public], counter=1)
    with pytest.raises(DecryptionError, match="bound to another path"):
        rewrap(blob, "/app/other", alice, [alice.public], counter=1)


# --- signing keys and their files -----------------------------------------------------------

def test_the_documented_signing_key_example():
    """FORMAT.md 2.2's example: an independent implementation must produce these texts."""
    key = SigningKey(bytes(range(32)))
    assert key.to_text() == "vksigsec1_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8D_1oV"
    assert key.public.to_text() == "vksigpub1_A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbig2daO"
    assert key.key_id == "vks1_bf431ea2bec37c450ac2285ac02fa3b4"
    assert key.public.raw.hex().startswith("03a107bf") and key.public.raw.hex().endswith(
        "125531b8")


def test_signing_key_text_round_trips(release):
    assert SigningKey.from_text(release.to_text()).public == release.public
    assert SigningPublicKey.from_text(release.public.to_text()) == release.public
    assert release.to_text().startswith("vksigsec1_") and len(release.to_text()) == 58
    assert release.public.to_text().startswith("vksigpub1_")
    assert release.key_id.startswith("vks1_") and len(release.key_id) == 37
    assert release.key_id == release.public.key_id


def test_signing_key_id_has_its_own_label(release):
    # The same 32 bytes as an X25519 public key would have another id (and prefix).
    raw = release.public.raw
    assert release.public.kid != key_id_bytes(raw)
    assert format_key_id(key_id_bytes(raw)).startswith("vk1_")


def test_signing_key_repr_hides_the_key(release):
    assert release.to_text() not in repr(release)
    assert release.key_id in repr(release)


def test_signing_keypair_files_round_trip(tmp_path):
    key_path, pub_path = write_signing_keypair(tmp_path / "release")
    assert (key_path.name, pub_path.name) == ("release.sigkey", "release.sigpub")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    secret, public = SigningKey.load(key_path), SigningPublicKey.load(pub_path)
    assert secret.public == public
    assert f"# key id: {public.key_id}" in pub_path.read_text()
    assert public.verify(b"m", secret.sign(b"m"))


def test_write_signing_keypair_refuses_to_overwrite(tmp_path):
    key_path, _ = write_signing_keypair(tmp_path / "w")
    before = key_path.read_text()
    with pytest.raises(KeyFileError, match="already exists"):
        write_signing_keypair(tmp_path / "w")
    assert key_path.read_text() == before
    write_signing_keypair(tmp_path / "w", force=True)
    assert key_path.read_text() != before


def test_public_signing_key_file_used_as_secret_is_named(tmp_path):
    _, pub_path = write_signing_keypair(tmp_path / "w")
    pub_path.chmod(0o600)
    with pytest.raises(KeyFileError,
                       match="this is a public signing key, but a secret signing key is needed"):
        SigningKey.load(pub_path)


def test_signing_keys_are_exactly_32_bytes():
    with pytest.raises(KeyFileError, match="32 bytes"):
        SigningKey(bytes(31))
    with pytest.raises(KeyFileError, match="32 bytes"):
        SigningPublicKey(bytes(33))


# --- SigningPublicKey.verify ----------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_verify_is_false_for_a_signature_of_the_wrong_length(release, length):
    sig = release.sign(b"message")
    assert release.public.verify(b"message", sig)
    assert not release.public.verify(b"message", (sig * 2)[:length])


def test_verify_is_false_for_another_message_or_key(release, mallory):
    sig = release.sign(b"message")
    assert not release.public.verify(b"messagE", sig)
    assert not mallory.public.verify(b"message", sig)
    assert not release.public.verify(b"message", bytes(64))
