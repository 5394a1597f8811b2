"""Secret files (tokens, passwords) are refused unless private; `vaultkey dev --dir` only
uses a directory that is the user's own and never changes an existing directory's mode."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

import vaultkey
from vaultkey._cli import main
from vaultkey._cli.dev import _state_dir, check_dir_is_private
from vaultkey._files import read_private, write_private
from vaultkey.client.settings import resolve


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _token_file(tmp_path: Path, mode: int, text: str = "s3cret-token\n") -> Path:
    path = tmp_path / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o660])
def test_a_token_file_group_or_others_can_access_is_refused(tmp_path, mode):
    path = _token_file(tmp_path, mode)
    with pytest.raises(vaultkey.UsageError) as info:
        resolve({"token_file": str(path)}, env={}, config_path="/dev/null")
    assert info.value.message == (f"{path}: permissions {mode:04o} are too open; the token "
                                  "file must not be readable by group or others")
    assert info.value.hint == f"run: chmod 600 {path}"


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_token_file_is_read(tmp_path, mode):
    path = _token_file(tmp_path, mode)
    assert resolve({"token_file": str(path)}, env={}, config_path="/dev/null").token == \
        "s3cret-token"
    env = {"VAULTKEY_TOKEN_FILE": str(path)}
    assert resolve({}, env=env, config_path="/dev/null").token == "s3cret-token"


def test_symlinks_are_followed_and_the_target_is_checked(tmp_path):
    # Kubernetes secret volumes are symlinks (token -> ..data/token): a link's own mode
    # (always 0777) means nothing, its target's does.
    target = _token_file(tmp_path, 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_private(link, "token file") == b"s3cret-token\n"
    target.chmod(0o644)
    with pytest.raises(vaultkey.UsageError, match="0644 are too open"):
        read_private(link, "token file")


def test_directories_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(vaultkey.UsageError, match="is not a regular file"):
        read_private(tmp_path, "token file")
    with pytest.raises(vaultkey.UsageError, match=r"missing: cannot open token file: No such file"):
        read_private(tmp_path / "missing", "token file")
    with pytest.raises(vaultkey.UsageError, match="is empty"):
        resolve({"token_file": str(_token_file(tmp_path, 0o600, "\n"))}, env={},
                config_path="/dev/null")


def test_a_pipe_works_like_process_substitution(tmp_path):
    # `vaultkey --token-file <(pass show vk) ...`: the shell hands over /dev/fd/N, a pipe,
    # whose writer may not have written yet when it is opened.
    read_end, write_end = os.pipe()
    writer = threading.Timer(0.05, lambda: (os.write(write_end, b"piped\n"),
                                            os.close(write_end)))
    writer.start()
    try:
        assert read_private(f"/dev/fd/{read_end}", "token file") == b"piped\n"
    finally:
        writer.join()
        os.close(read_end)


def test_a_quoted_fix_for_awkward_names(tmp_path):
    path = tmp_path / "my token"
    path.write_text("x")
    path.chmod(0o644)
    with pytest.raises(vaultkey.UsageError) as info:
        read_private(path, "token file")
    assert info.value.hint == f"run: chmod 600 '{path}'"


def test_write_private_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private(tmp_path / "t", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "t") == 0o600
    read_private(tmp_path / "t", "token file")  # what vaultkey writes, it accepts


@pytest.mark.parametrize("option", ["--admin-token-file", "--etcd-password-file"])
def test_serve_refuses_a_secret_file_others_can_read(tmp_path, monkeypatch, capsys, option):
    monkeypatch.setenv("VAULTKEY_ADMIN_TOKEN", "Qm9yaW5nIGJ1dCBsb25nIGVub3VnaCBzZWNyZXQ")
    secret = _token_file(tmp_path, 0o644)
    code = main(["serve", "--insecure", "--policies", str(tmp_path), option, str(secret)])
    err = capsys.readouterr().err
    assert code == 64
    what = "admin token" if option == "--admin-token-file" else "etcd password"
    assert f"the {what} file must not be readable by group or others" in err
    assert f"run: chmod 600 {secret}" in err


def test_dev_creates_a_new_dir_0700(tmp_path):
    old = os.umask(0o022)
    try:
        root = _state_dir(str(tmp_path / "new" / "state"))
    finally:
        os.umask(old)
    assert root == tmp_path / "new" / "state"
    assert _mode(root) == 0o700


def test_dev_keeps_an_existing_dir_of_ours_as_it_is(tmp_path):
    for mode in (0o755, 0o700, 0o750):
        existing = tmp_path / f"d{mode:o}"
        existing.mkdir()
        existing.chmod(mode)
        assert _state_dir(str(existing)) == existing
        assert _mode(existing) == mode


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777])
def test_dev_refuses_a_dir_group_or_others_can_write(tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(vaultkey.UsageError, match="writable by group or others") as info:
        _state_dir(str(shared))
    assert "chmod go-w" in str(info.value.hint)
    assert stat.S_IMODE(shared.stat().st_mode) == mode  # never changed


def test_dev_refuses_a_dir_someone_else_owns(tmp_path):
    if os.getuid() == 0:  # as root: give a directory of ours away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
    else:  # otherwise "/" is root's, not ours
        theirs = Path("/")
    owner, mode = theirs.stat().st_uid, _mode(theirs)
    with pytest.raises(vaultkey.UsageError, match=f"belongs to uid {owner}, not to you"):
        check_dir_is_private(theirs, theirs.stat())
    with pytest.raises(vaultkey.UsageError, match=f"belongs to uid {owner}"):
        _state_dir(str(theirs))
    assert (_mode(theirs), theirs.stat().st_uid) == (mode, owner)  # left alone


def test_dev_refuses_a_file_as_dir(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(vaultkey.UsageError, match="not a directory"):
        _state_dir(str(tmp_path / "f"))
