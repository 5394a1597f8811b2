"""Rollback marks on the reader's side (client/marks.py): in memory, and in a shared file.

Run: ``pytest -q tests/unit/test_marks.py``. A reader remembers the highest writer
counter it has seen per path; a lower one is a rollback::

    marks = Marks(str(tmp_path / "marks.json"), scope="proxy:8443")
    marks.check("/app/db", 5, revision=10)
    marks.check("/app/db", 4, revision=11)   # RollbackDetected
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vaultkey.client.marks import Marks, default_marks_file
from vaultkey.errors import DecryptionError, RollbackDetected, UsageError

KEY = "/app/db"
SCOPE = "https://proxy.example:8443"


@pytest.fixture
def marks_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "marks.json"


def _file_data(path: Path) -> dict[str, object]:
    return json.loads(path.read_text(encoding="utf-8"))


# --- in memory ------------------------------------------------------------------------------

def test_rollback_detected_is_a_decryption_error_with_exit_code_12() -> None:
    assert issubclass(RollbackDetected, DecryptionError)
    assert RollbackDetected.exit_code == 12


def test_a_new_path_has_no_mark_and_a_check_raises_it() -> None:
    marks = Marks()
    assert marks.get(KEY) == 0
    marks.check(KEY, 5, revision=10)
    assert marks.get(KEY) == 5
    assert marks.snapshot() == {KEY: 5}


def test_counter_zero_is_accepted_only_while_there_is_no_mark() -> None:
    marks = Marks()
    marks.check(KEY, 0)
    marks.check(KEY, 0)
    assert marks.get(KEY) == 0
    assert marks.snapshot() == {}  # "not set" never becomes a mark
    marks.check(KEY, 1, revision=3)
    with pytest.raises(RollbackDetected, match="counter 0 is lower than 1"):
        marks.check(KEY, 0, revision=4)


def test_an_equal_counter_is_accepted_and_a_higher_one_raises_the_mark() -> None:
    marks = Marks()
    marks.check(KEY, 5, revision=10)
    marks.check(KEY, 5, revision=10)  # the same value read again
    marks.check(KEY, 5, revision=11)
    assert marks.get(KEY) == 5
    marks.check(KEY, 9, revision=12)
    assert marks.get(KEY) == 9


def test_a_lower_counter_raises_and_does_not_lower_the_mark() -> None:
    marks = Marks()
    marks.check(KEY, 7, revision=12)
    with pytest.raises(RollbackDetected) as caught:
        marks.check(KEY, 6, revision=13)
    assert caught.value.message.startswith("counter 6 is lower than 7")
    assert caught.value.hint is not None
    assert marks.get(KEY) == 7
    with pytest.raises(RollbackDetected):  # still refused the second time
        marks.check(KEY, 6, revision=13)


def test_marks_are_per_path() -> None:
    marks = Marks()
    marks.check("/app/a", 9, revision=5)
    marks.check("/app/b", 1, revision=6)  # a lower counter on another path is fine
    assert marks.snapshot() == {"/app/a": 9, "/app/b": 1}


def test_history_older_than_the_mark_is_accepted_without_changing_it() -> None:
    marks = Marks()
    marks.check(KEY, 5, revision=10)
    marks.check(KEY, 7, revision=12)
    marks.check(KEY, 5, revision=10, history=True)  # a watch replaying old changes
    marks.check(KEY, 1, revision=2, history=True)
    assert marks.get(KEY) == 7
    marks.check(KEY, 8, revision=14)  # the mark still rises afterwards
    assert marks.get(KEY) == 8


@pytest.mark.parametrize("revision", [12, 13, 100])
def test_history_at_or_after_the_marks_revision_is_still_a_rollback(revision: int) -> None:
    marks = Marks()
    marks.check(KEY, 7, revision=12)
    with pytest.raises(RollbackDetected, match="counter 6 is lower than 7"):
        marks.check(KEY, 6, revision=revision, history=True)
    assert marks.get(KEY) == 7


def test_history_does_not_help_a_read_of_the_current_value() -> None:
    marks = Marks()
    marks.check(KEY, 7, revision=12)
    with pytest.raises(RollbackDetected):
        marks.check(KEY, 5, revision=10)  # history=False: an old value served as current


def test_batch_without_a_file_keeps_marks_in_memory() -> None:
    marks = Marks()
    with marks.batch():
        marks.check("/a", 2, revision=1)
        marks.check("/b", 3, revision=1)
    assert marks.snapshot() == {"/a": 2, "/b": 3}


# --- in a file ------------------------------------------------------------------------------

def test_the_file_is_private_and_has_the_documented_format(marks_file: Path) -> None:
    marks = Marks(str(marks_file), scope=SCOPE)
    marks.check(KEY, 5, revision=10)
    assert stat.S_IMODE(marks_file.stat().st_mode) == 0o600
    assert _file_data(marks_file) == {"version": 1, "scopes": {SCOPE: {KEY: [5, 10]}}}
    marks.check(KEY, 7, revision=12)
    assert _file_data(marks_file) == {"version": 1, "scopes": {SCOPE: {KEY: [7, 12]}}}
    assert stat.S_IMODE(marks_file.stat().st_mode) == 0o600
    assert not list(marks_file.parent.glob("*.tmp"))  # replaced atomically, nothing left


def test_checks_that_raise_nothing_do_not_create_the_file(marks_file: Path) -> None:
    marks = Marks(str(marks_file), scope=SCOPE)
    marks.check(KEY, 0)
    assert marks.get("/other") == 0
    assert not marks_file.exists()


def test_a_second_instance_on_the_same_file_and_scope_sees_the_marks(marks_file: Path) -> None:
    Marks(str(marks_file), scope=SCOPE).check(KEY, 7, revision=12)
    later = Marks(str(marks_file), scope=SCOPE)
    assert later.get(KEY) == 7
    with pytest.raises(RollbackDetected, match="lower than 7"):
        later.check(KEY, 6, revision=13)
    later.check(KEY, 5, revision=11, history=True)  # the revision was persisted too
    with pytest.raises(RollbackDetected):
        later.check(KEY, 5, revision=13, history=True)


def test_scopes_are_independent(marks_file: Path) -> None:
    Marks(str(marks_file), scope="proxy-a:8443").check(KEY, 7, revision=12)
    other = Marks(str(marks_file), scope="proxy-b:8443")
    assert other.get(KEY) == 0
    other.check(KEY, 2, revision=3)  # lower than proxy-a's mark, but another proxy
    assert _file_data(marks_file)["scopes"] == {
        "proxy-a:8443": {KEY: [7, 12]}, "proxy-b:8443": {KEY: [2, 3]}}
    assert Marks(str(marks_file), scope="proxy-a:8443").get(KEY) == 7


def test_two_instances_raising_different_paths_lose_no_update(marks_file: Path) -> None:
    first = Marks(str(marks_file), scope=SCOPE)
    second = Marks(str(marks_file), scope=SCOPE)
    assert first.get("/a") == 0
    assert second.get("/b") == 0  # both have loaded the (empty) file
    first.check("/a", 3, revision=5)
    second.check("/b", 4, revision=6)  # written on top of first's write: merged, not lost
    assert _file_data(marks_file)["scopes"] == {SCOPE: {"/a": [3, 5], "/b": [4, 6]}}
    assert second.snapshot() == {"/a": 3, "/b": 4}  # the merge also taught second


def test_another_processs_higher_mark_wins_the_merge(marks_file: Path) -> None:
    first = Marks(str(marks_file), scope=SCOPE)
    second = Marks(str(marks_file), scope=SCOPE)
    assert second.get(KEY) == 0
    first.check(KEY, 9, revision=20)
    # second read the file before; it sees first's newer mark before deciding, so a
    # process sharing the file never accepts what another already knows is a rollback
    with pytest.raises(RollbackDetected):
        second.check(KEY, 4, revision=21)
    assert _file_data(marks_file)["scopes"] == {SCOPE: {KEY: [9, 20]}}
    assert second.get(KEY) == 9
    second.check(KEY, 12, revision=30)
    assert first.get(KEY) == 12


def test_batch_writes_the_file_once_at_the_end(marks_file: Path) -> None:
    marks = Marks(str(marks_file), scope=SCOPE)
    marks.check("/seed", 1, revision=1)
    before = marks_file.read_bytes()
    with marks.batch():
        marks.check("/a", 2, revision=7)
        marks.check("/b", 3, revision=7)
        with marks.batch():  # nested: still one write, by the outer block
            marks.check("/c", 4, revision=7)
        assert marks_file.read_bytes() == before
        assert marks.get("/a") == 2  # the marks hold in memory meanwhile
        with pytest.raises(RollbackDetected):
            marks.check("/a", 1, revision=8)
    assert _file_data(marks_file)["scopes"] == {
        SCOPE: {"/seed": [1, 1], "/a": [2, 7], "/b": [3, 7], "/c": [4, 7]}}


def test_batch_saves_its_marks_even_when_the_block_fails(marks_file: Path) -> None:
    marks = Marks(str(marks_file), scope=SCOPE)
    with pytest.raises(RuntimeError), marks.batch():
        marks.check("/a", 2, revision=7)
        raise RuntimeError("listing interrupted")
    assert _file_data(marks_file)["scopes"] == {SCOPE: {"/a": [2, 7]}}


def test_a_batch_that_raises_nothing_writes_nothing(marks_file: Path) -> None:
    marks = Marks(str(marks_file), scope=SCOPE)
    with marks.batch():
        marks.check("/a", 0)
    assert not marks_file.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "cannot read the rollback marks file"),
        ("[1, 2]", "is not a vaultkey marks file (version 1)"),
        ('{"version": 2, "scopes": {}}', "is not a vaultkey marks file (version 1)"),
        ('{"version": 1}', "is not a vaultkey marks file (version 1)"),
        ('{"version": 1, "scopes": []}', "is not a vaultkey marks file (version 1)"),
        ('{"version": 1, "scopes": {"s": {"/k": 7}}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": {"/k": [7]}}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": {"/k": ["x", 1]}}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": [1]}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": {"/k": "12"}}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": {"/k": [1, 2, 3]}}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": {"/k": [true, false]}}}', "bad entry"),
        ('{"version": 1, "scopes": {"s": {"/k": [-1, 2]}}}', "bad entry"),
    ],
    ids=["not_json", "not_an_object", "wrong_version", "no_scopes", "scopes_not_an_object",
         "entry_not_a_pair", "entry_too_short", "counter_not_a_number", "table_not_an_object",
         "entry_a_string", "entry_too_long", "entry_booleans", "entry_negative"],
)
def test_a_corrupt_file_is_a_usage_error_naming_it(
    marks_file: Path, content: str, fragment: str
) -> None:
    marks_file.parent.mkdir(parents=True)
    marks_file.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        Marks(str(marks_file), scope="s").get(KEY)
    assert str(marks_file) in caught.value.message
    assert fragment in caught.value.message


def test_a_corrupt_file_keeps_failing_and_is_never_read_as_no_marks(marks_file: Path) -> None:
    marks_file.parent.mkdir(parents=True)
    marks_file.write_text("{bad", encoding="utf-8")
    marks = Marks(str(marks_file), scope=SCOPE)
    for _ in range(2):
        with pytest.raises(UsageError):
            marks.get(KEY)
        with pytest.raises(UsageError):
            marks.check(KEY, 0)


def test_a_corrupt_file_is_never_overwritten(marks_file: Path) -> None:
    marks_file.parent.mkdir(parents=True)
    marks_file.write_text("{not json", encoding="utf-8")
    marks = Marks(str(marks_file), scope=SCOPE)
    with pytest.raises(UsageError):
        marks.check(KEY, 3, revision=1)
    assert marks_file.read_text(encoding="utf-8") == "{not json"


# --- default_marks_file ---------------------------------------------------------------------

def test_default_marks_file_honours_xdg_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_marks_file() == os.path.join(str(tmp_path / "xdg"), "vaultkey", "marks.json")


@pytest.mark.parametrize("value", [None, ""])
def test_default_marks_file_falls_back_to_local_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_marks_file() == os.path.join(str(tmp_path), ".local", "state", "vaultkey",
                                                "marks.json")
