"""The one polling helper of the test suite: wait for a condition, never for a guessed time.

Example::

    assert wait_until(lambda: "/alpha/x" in audit.read_text())
    port = wait_until(read_port_file, timeout=5, ignore=(FileNotFoundError,))

A test that sleeps a fixed time either waits too long (slow suite) or too
short (flaky suite); polling the condition it really waits for does neither.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

T = TypeVar("T")

FIRST_INTERVAL = 0.001


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, *,
               ignore: tuple[type[BaseException], ...] = ()) -> T | Literal[False]:
    """Call *predicate* until it returns a true value; return that value, or False on timeout.

    The pause between calls starts at 1 ms and doubles up to *interval*, so a
    condition that holds almost at once costs almost nothing and a slow one is
    not polled in a busy loop. An exception of a type in *ignore* counts as "not
    yet" (e.g. a connection refused while a server starts); any other exception
    propagates at once (e.g. "the server process exited"). The predicate is
    called one last time at the deadline.
    """
    deadline = time.monotonic() + timeout
    pause = min(FIRST_INTERVAL, interval)
    while True:
        last_call = time.monotonic() >= deadline
        try:
            result = predicate()
        except ignore:
            result = None  # type: ignore[assignment]
        if result:
            return result
        if last_call:
            return False
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, interval)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) if the block blocks for longer than *seconds*."""
    def expire(_signum: int, _frame: object) -> None:
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
