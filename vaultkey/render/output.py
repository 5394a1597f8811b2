"""Putting a rendered file in place the way an SRE can trust at 3 a.m.

1. Compare: the content, mode and owner the file would get against what is there; if all
   are the same, nothing is written and nothing is reloaded.
2. Stage: a new file next to the destination (so the rename never crosses filesystems),
   created 0600 with ``O_EXCL``, written and fsynced.
3. Check: the check command runs on the staged file (``{{src}}``); if it fails or runs out
   of time, the staged file is removed and the destination is untouched.
4. The owner is set on the staged file, it is renamed over the destination in one step (a
   reader sees the old file or the new one, never a part), its mode is set (through the
   same descriptor: the staged file is never readable by others), and the directory is
   fsynced.
5. Reload: the reload command runs, only now, and only because the content changed.

Commands are an argument list (no shell) or a string run by ``/bin/sh -c`` (as confd's),
with ``{{src}}`` / ``{{dest}}`` substituted (shell-quoted in a string). Each runs in its
own process group under a timeout; on timeout the whole group is killed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vaultkey.errors import CommandFailed, UsageError

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    """Where a rendered file goes and how it is applied."""

    dest: Path
    mode: int = 0o600
    uid: int | None = None
    gid: int | None = None
    check_cmd: str | list[str] | None = None
    reload_cmd: str | list[str] | None = None
    timeout: float = DEFAULT_TIMEOUT


def unchanged(target: Target, content: bytes) -> bool:
    """Whether the destination already has exactly this content, mode and owner."""
    try:
        st = os.stat(target.dest)
        if (st.st_mode & 0o7777) != target.mode:
            return False
        if (target.uid is not None and st.st_uid != target.uid) or (
                target.gid is not None and st.st_gid != target.gid):
            return False
        return target.dest.read_bytes() == content
    except FileNotFoundError:
        return False


def apply(target: Target, content: bytes) -> bool:
    """Stage, check, rename, reload; False if nothing changed (nothing done)."""
    if unchanged(target, content):
        return False
    staged = _stage(target, content)
    fd = -1
    try:
        if target.check_cmd is not None:
            run(target.check_cmd, target, staged, "check")
        fd = os.open(staged, os.O_RDONLY)
        if target.uid is not None or target.gid is not None:
            os.fchown(fd, -1 if target.uid is None else target.uid,
                      -1 if target.gid is None else target.gid)
        os.replace(staged, target.dest)
        # Why the mode after the rename, through the descriptor: the staged file is never
        # readable by others; the file in place is the same inode, so nothing can swap it.
        os.fchmod(fd, target.mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _fsync_dir(target.dest.parent)
    if target.reload_cmd is not None:
        run(target.reload_cmd, target, target.dest, "reload")
    return True


def _stage(target: Target, content: bytes) -> Path:
    directory = target.dest.parent
    if not directory.is_dir():
        raise UsageError(f"{directory} does not exist (the directory of {target.dest})")
    for n in range(100):
        staged = directory / f".{target.dest.name}.vaultkey-{os.getpid()}-{n}"
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, 0o600)  # whatever the umask: never readable by others while staged
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return staged
    raise UsageError(f"cannot create a staging file in {directory}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def command_argv(cmd: str | list[str], src: Path, dest: Path) -> list[str]:
    """The argv of a check or reload command, with ``{{src}}`` and ``{{dest}}`` filled in."""
    def fill(text: str, quote: bool) -> str:
        q = shlex.quote if quote else str
        return text.replace("{{src}}", q(str(src))).replace("{{dest}}", q(str(dest)))

    if isinstance(cmd, str):
        return ["/bin/sh", "-c", fill(cmd, True)]
    return [fill(part, False) for part in cmd]


def run(cmd: str | list[str], target: Target, src: Path, what: str) -> None:
    """Run a check or reload command; CommandFailed if it fails or outlives the timeout (its
    whole process group is then killed). Its output goes to our stderr, as it is."""
    argv = command_argv(cmd, src, target.dest)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise CommandFailed(f"{what} command for {target.dest} could not start: "
                            f"{exc.strerror}") from None
    try:
        code = proc.wait(target.timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise CommandFailed(f"{what} command for {target.dest} did not finish in "
                            f"{target.timeout:g} s and was killed (with its process group)"
                            + ("; the new file is in place" if what == "reload" else
                               "; the old file is kept")) from None
    if code != 0:
        kept = "; the new file is in place" if what == "reload" else "; the old file is kept"
        raise CommandFailed(f"{what} command for {target.dest} failed (exit {code}){kept}")


__all__ = ["DEFAULT_TIMEOUT", "Target", "apply", "command_argv", "run", "unchanged"]
