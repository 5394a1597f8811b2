"""Files that hold secrets: written mode 0600 from the first byte, never through a symlink;
read only if group and others cannot read them (like ssh with its keys)."""

from __future__ import annotations

import os
import stat

from vaultkey.errors import UsageError, VaultkeyError

MAX_SECRET_FILE_BYTES = 64 * 1024


def write_private(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = False) -> None:
    """Write *data* to *path* with mode 0600.

    With ``exclusive`` the file must not exist yet (not even as a dangling symlink);
    otherwise an existing file or symlink is removed first, so the write can never
    follow a link planted by someone else.
    """
    p = os.fspath(path)
    if not exclusive and (os.path.islink(p) or os.path.exists(p)):
        os.unlink(p)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def check_private(st: os.stat_result, path: str | os.PathLike[str], what: str,
                  error: type[VaultkeyError] = UsageError) -> None:
    """Refuse a secret file that group or others may access (mode & 0o077), as ssh does:
    a token or password anyone else on the machine can read is no longer a secret."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        import shlex

        raise error(f"{path}: permissions {mode:04o} are too open; the {what} must not be "
                    "readable by group or others",
                    hint=f"run: chmod 600 {shlex.quote(os.fspath(path))}")


def read_private(path: str | os.PathLike[str], what: str,
                 error: type[VaultkeyError] = UsageError, *, key_file: bool = False) -> bytes:
    """The contents of a small secret file (token, password, key), checked like ssh does.

    The check is made on the opened descriptor (``fstat``), so the file checked is the
    file read. For tokens and passwords symlinks are followed and the target's mode is
    checked (Kubernetes and other secret mounts are symlinks), and a pipe
    (``--token-file <(pass show vk)``) is accepted. A ``key_file`` must be a regular file
    that is not a symlink. A directory, device or socket is never accepted.
    """
    p = os.path.expanduser(os.fspath(path))
    # O_NONBLOCK: opening a FIFO nobody writes to must not hang before the type check.
    flags = os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if key_file else 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise error(f"{p}: cannot open {what}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or (stat.S_ISFIFO(st.st_mode) and not key_file)):
            raise error(f"{p}: {what} is not a regular file")
        check_private(st, p, what, error)
        os.set_blocking(fd, True)  # a pipe's writer may not have written yet
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(MAX_SECRET_FILE_BYTES)
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror}") from exc
    finally:
        os.close(fd)
