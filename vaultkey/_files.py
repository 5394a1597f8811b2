"""Writing files that hold secrets: mode 0600 from the first byte, never through a symlink."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = False) -> None:
    """Write *data* to *path* with mode 0600.

    With ``exclusive`` the file must not exist yet (not even as a dangling symlink);
    otherwise an existing file or symlink is removed first, so the write can never
    follow a link planted by someone else.
    """
    p = Path(path)
    if not exclusive and (p.is_symlink() or p.exists()):
        p.unlink()
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
