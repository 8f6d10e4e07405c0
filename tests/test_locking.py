"""The per-uid lock: exclusion between threads and processes, waits, timeouts.

Every test runs twice: with ``flock`` (POSIX) and with the portable
``filelock`` path that Windows uses, forced with ``portable=True``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from e3_typed_store._locking import uid_lock
from e3_typed_store.errors import StoreError

UID = "0123abcd"


@pytest.fixture(params=[False, True], ids=["flock", "filelock"])
def portable(request: pytest.FixtureRequest) -> bool:
    value: object = request.param
    assert isinstance(value, bool)
    return value


def hold_lock(lock_dir: str, held: str, release: str, portable: bool) -> None:
    """In a child: take the lock, say so, and hold it until *release* exists."""
    with uid_lock(lock_dir, UID, 30.0, portable=portable):
        Path(held).touch()
        while not os.path.exists(release):
            threading.Event().wait(0.01)
        Path(held + ".released").touch()


def hold_lock_forever(lock_dir: str, held: str, portable: bool) -> None:
    with uid_lock(lock_dir, UID, 30.0, portable=portable):
        Path(held).touch()
        threading.Event().wait(600)


def wait_for(path: Path, process: BaseProcess) -> None:
    while not path.exists():
        assert process.is_alive(), "the child died before taking the lock"
        threading.Event().wait(0.01)


def test_creates_the_lock_directory(tmp_path: Path, portable: bool) -> None:
    lock_dir = tmp_path / "a" / "locks"
    with uid_lock(str(lock_dir), UID, 1.0, portable=portable):
        assert (lock_dir / (UID + ".lock")).is_file()


def test_two_threads_exclude_each_other(tmp_path: Path, portable: bool) -> None:
    lock_dir = str(tmp_path / "locks")
    errors: list[str] = []
    with uid_lock(lock_dir, UID, 1.0, portable=portable):
        # Another thread of this process cannot take the same lock...
        def contender() -> None:
            try:
                with uid_lock(lock_dir, UID, 0.1, portable=portable):
                    errors.append("taken twice")
            except StoreError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=contender)
        thread.start()
        thread.join()
    assert len(errors) == 1
    assert "held the lock of 0123abcd" in errors[0]
    # ...and takes it once it is released.
    with uid_lock(lock_dir, UID, 0.0, portable=portable):
        pass


def test_waits_for_another_process(tmp_path: Path, portable: bool) -> None:
    lock_dir = str(tmp_path / "locks")
    held, release = tmp_path / "held", tmp_path / "release"
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(
        target=hold_lock, args=(lock_dir, str(held), str(release), portable)
    )
    child.start()
    try:
        wait_for(held, child)
        with pytest.raises(StoreError, match="held the lock"):
            with uid_lock(lock_dir, UID, 0.05, portable=portable):
                pass
        release.touch()
        with uid_lock(lock_dir, UID, 60.0, portable=portable):
            # Taken only after the child let go of it.
            assert (tmp_path / "held.released").exists()
    finally:
        release.touch()
        child.join(60)
    assert child.exitcode == 0


def test_a_killed_holder_releases_the_lock(tmp_path: Path, portable: bool) -> None:
    lock_dir = str(tmp_path / "locks")
    held = tmp_path / "held"
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=hold_lock_forever, args=(lock_dir, str(held), portable))
    child.start()
    try:
        wait_for(held, child)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(60)
        with uid_lock(lock_dir, UID, 60.0, portable=portable):
            assert child.exitcode == -signal.SIGKILL
    finally:
        child.kill()
        child.join(60)


def test_unusual_uids_get_a_safe_lock_name(tmp_path: Path, portable: bool) -> None:
    lock_dir = tmp_path / "locks"
    with uid_lock(str(lock_dir), "../../escape", 1.0, portable=portable):
        (name,) = os.listdir(lock_dir)
    assert name.startswith("_") and name.endswith(".lock")
    assert not (tmp_path / "escape.lock").exists()
