"""The audit writer never loses a line: retries on a failing disk, slots come back."""

from __future__ import annotations


class _FlakyDisk:
    """A stream that fails a given number of writes (ENOSPC), then works."""

    def __init__(self, failures: int) -> None:
        self.left = failures
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        if self.left:
            self.left -= 1
            raise OSError(28, "No space left on device")
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_audit_writer_survives_a_full_disk_and_loses_no_line():
    from vaultkey.proxy.audit import AuditWriter

    disk = _FlakyDisk(failures=5)
    writer = AuditWriter(disk, capacity=5)  # type: ignore[arg-type]
    for i in range(5):
        assert writer.reserve()
        writer.write(f"line {i}")
    writer.close()
    assert [x.strip() for x in disk.lines] == [f"line {i}" for i in range(5)]
    assert writer.failures == 5
    assert not writer.reserve()  # closed: no new lines accepted


def test_audit_slots_come_back_after_the_disk_recovers():
    import time

    from vaultkey.proxy.audit import AuditWriter

    disk = _FlakyDisk(failures=3)
    writer = AuditWriter(disk, capacity=2)  # type: ignore[arg-type]
    assert writer.reserve() and writer.reserve()
    writer.write("a")
    writer.write("b")
    deadline = time.monotonic() + 10
    while not writer.reserve():  # both slots held until the disk took the lines
        assert time.monotonic() < deadline
        time.sleep(0.01)
    writer.write("c")  # the slot just taken is used, as a request would
    writer.close()
    assert [x.strip() for x in disk.lines] == ["a", "b", "c"]
