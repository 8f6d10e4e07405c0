"""The per-uid lock: exclusion between threads and processes, waits, timeouts.

Every test runs twice: with ``flock`` (POSIX) and with the portable
``filelock`` path that Windows uses, forced with ``portable=True``.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from e3_typed_store._locking import (
    process_lock,
    remove_idle_lock,
    remove_idle_locks,
    uid_lock,
)
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


def start_holder(lock_dir: str, held: str, release: str, portable: bool) -> BaseProcess:
    """Start a child process running :func:`hold_lock`."""
    child = multiprocessing.get_context("spawn").Process(
        target=hold_lock, args=(lock_dir, held, release, portable)
    )
    child.start()
    return child


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
    child = start_holder(lock_dir, str(held), str(release), portable)
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


def test_an_idle_lock_file_is_removed(tmp_path: Path, portable: bool) -> None:
    lock_dir = tmp_path / "locks"
    with uid_lock(str(lock_dir), UID, 1.0, portable=portable):
        pass
    assert (lock_dir / (UID + ".lock")).is_file()
    assert remove_idle_lock(str(lock_dir), UID)
    assert list(lock_dir.iterdir()) == []
    assert not remove_idle_lock(str(lock_dir), UID)  # nothing left to remove
    # The lock is taken again as before.
    with uid_lock(str(lock_dir), UID, 1.0, portable=portable):
        assert (lock_dir / (UID + ".lock")).is_file()


def test_a_held_lock_file_stays(tmp_path: Path, portable: bool) -> None:
    lock_dir = str(tmp_path / "locks")
    held, release = tmp_path / "held", tmp_path / "release"
    with uid_lock(lock_dir, "idle", 1.0, portable=portable):
        pass
    (tmp_path / "locks" / "notes.txt").write_text("not a lock", encoding="utf-8")
    child = start_holder(lock_dir, str(held), str(release), portable)
    try:
        wait_for(held, child)
        assert not remove_idle_lock(lock_dir, UID)
        assert remove_idle_locks(lock_dir) == 1  # idle.lock only
        assert sorted(os.listdir(lock_dir)) == [UID + ".lock", "notes.txt"]
        # The holder still excludes others.
        with pytest.raises(StoreError, match="held the lock"):
            with uid_lock(lock_dir, UID, 0.05, portable=portable):
                pass
        release.touch()
        child.join(60)
        assert remove_idle_locks(lock_dir) == 1
        assert os.listdir(lock_dir) == ["notes.txt"]
    finally:
        release.touch()
        child.join(60)
    assert child.exitcode == 0


def has_open(pid: int, path: Path) -> bool:
    """Whether process *pid* has *path* open (Linux: through /proc)."""
    fds = f"/proc/{pid}/fd"
    for name in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, name)) == str(path):
                return True
        except FileNotFoundError:
            pass
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_waiter_on_a_removed_lock_file_waits_for_the_new_one(
    tmp_path: Path,
) -> None:
    """Removing an idle file races with a process that has just opened it.

    That process must not count the lock of the removed file as the lock of
    the uid: a third one may meanwhile hold the file made at the same path.
    """
    import fcntl

    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    path = lock_dir / (UID + ".lock")
    held, release = tmp_path / "held", tmp_path / "release"
    # This process plays the remover: it holds the file it is about to remove.
    removed = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(removed, fcntl.LOCK_EX)
    child = start_holder(str(lock_dir), str(held), str(release), False)
    try:
        while not has_open(child.pid or 0, path):
            assert child.is_alive()
            threading.Event().wait(0.01)
        os.unlink(path)
        # ...and then the next process to take the lock, on a new file.
        new = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        fcntl.flock(new, fcntl.LOCK_EX)
        os.close(removed)  # the child can now lock the removed file
        threading.Event().wait(0.5)
        assert not held.exists(), "the child took the lock while another held it"
        os.close(new)
        wait_for(held, child)
    finally:
        release.touch()
        child.join(60)
    assert child.exitcode == 0


def remove_as_nobody(lock_dir: str) -> None:
    """In a forked child: drop to the user nobody, and remove idle locks."""
    os.setgid(65534)
    os.setuid(65534)
    removed = remove_idle_locks(lock_dir)
    sys.exit(10 + removed)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root, to run the removal as another user",
)
def test_another_users_lock_file_is_left_alone() -> None:
    """A shared cache: a user may remove only the lock files it may open."""
    # Out of pytest's own temporary directory, which only root may enter.
    shared = Path(tempfile.mkdtemp(prefix="e3-typed-store-shared-"))
    try:
        lock_dir = shared / "locks"
        with uid_lock(str(lock_dir), UID, 1.0):
            pass
        (lock_dir / (UID + ".lock")).chmod(0o644)  # root's, as its umask makes it
        for directory in (shared, lock_dir):
            directory.chmod(0o777)  # others may make and remove files here
        # Forked, not spawned: the venv's interpreter may be out of nobody's
        # reach.
        child = multiprocessing.get_context("fork").Process(
            target=remove_as_nobody, args=(str(lock_dir),)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 10  # nothing removed, and no error
        assert os.listdir(lock_dir) == [UID + ".lock"]
    finally:
        shutil.rmtree(shared)


@pytest.mark.skipif(os.name != "posix", reason="flock and links: POSIX")
def test_a_link_in_place_of_a_lock_file_is_not_followed(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    outside = tmp_path / "outside"
    path = lock_dir / (UID + ".lock")
    path.symlink_to(outside)  # dangling: a create would make a file there
    with pytest.raises(OSError) as raised:
        with uid_lock(str(lock_dir), UID, 5.0):
            pass
    assert raised.value.errno == errno.ELOOP
    assert not outside.exists()
    # Clearing removes the link, not what it points to...
    outside.write_text("mine", encoding="utf-8")
    assert remove_idle_locks(str(lock_dir)) == 1
    assert os.listdir(lock_dir) == []
    assert outside.read_text(encoding="utf-8") == "mine"
    # ...and so does removing the lock of that uid.
    path.symlink_to(outside)
    assert remove_idle_lock(str(lock_dir), UID)
    assert not os.path.lexists(path) and outside.exists()
    with uid_lock(str(lock_dir), UID, 5.0):
        assert path.is_file() and not path.is_symlink()


def test_a_long_wait_is_logged_once(
    tmp_path: Path, portable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lock_dir = str(tmp_path / "locks")
    held, release = str(tmp_path / "held"), str(tmp_path / "release")
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        with uid_lock(lock_dir, UID, 5.0, portable=portable):
            pass  # uncontended: nothing to say
        assert caplog.records == []
        child = start_holder(lock_dir, held, release, portable)
        try:
            wait_for(Path(held), child)
            with pytest.raises(StoreError, match="held the lock"):
                with uid_lock(lock_dir, UID, 2.5, portable=portable):
                    pass
        finally:
            Path(release).touch()
            child.join(60)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "e3.store.wait",
            logging.WARNING,
            f"waiting for {UID}, locked by another process (up to 2.5 s)",
        )
    ]


def test_a_long_wait_for_another_thread_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = object()
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with process_lock(owner, UID, 5.0):
            taken.set()
            release.wait(60)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        taken.wait(60)
        with caplog.at_level(logging.WARNING, logger="e3.store"):
            with pytest.raises(StoreError, match="another thread"):
                with process_lock(owner, UID, 2.5):
                    pass
    finally:
        release.set()
        thread.join(60)
    assert [r.getMessage() for r in caplog.records] == [
        f"waiting for {UID}, locked by another thread (up to 2.5 s)"
    ]


@pytest.mark.skipif(os.name != "posix", reason="flock and links: POSIX")
def test_a_link_in_place_of_the_lock_directory_is_not_followed(
    tmp_path: Path, portable: bool
) -> None:
    outside = tmp_path / "project"
    outside.mkdir()
    (outside / "Cargo.lock").write_text("mine", encoding="utf-8")
    (outside / (UID + ".lock")).write_text("mine too", encoding="utf-8")
    lock_dir = tmp_path / "cache" / "locks"
    lock_dir.parent.mkdir()
    lock_dir.symlink_to(outside)
    with pytest.raises(OSError, match="not a directory of the cache"):
        with uid_lock(str(lock_dir), "other", 5.0, portable=portable):
            pass
    assert remove_idle_locks(str(lock_dir)) == 0
    assert not remove_idle_lock(str(lock_dir), UID)
    assert sorted(os.listdir(outside)) == sorted(["Cargo.lock", UID + ".lock"])
    assert lock_dir.is_symlink()


def test_a_directory_in_place_of_a_lock_file_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock_dir = tmp_path / "locks"
    (lock_dir / (UID + ".lock")).mkdir(parents=True)
    (lock_dir / (UID + ".lock") / "inside").write_text("mine", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="e3.store"):
        assert not remove_idle_lock(str(lock_dir), UID)
        assert remove_idle_locks(str(lock_dir)) == 0
    assert (lock_dir / (UID + ".lock") / "inside").read_text(encoding="utf-8") == "mine"
    # Each call names it: the sweep of every lock file too.
    assert [r.getMessage() for r in caplog.records] == 2 * [
        f"{lock_dir / (UID + '.lock')} is a directory, not a lock file: left alone"
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_does_not_keep_another_threads_lock(tmp_path: Path) -> None:
    # A thread holds the lock when the process forks (a multiprocessing pool
    # started meanwhile, say). The child shares the lock's open file, but must
    # not hold it: once the thread is done, the parent and the child take it.
    lock_dir = str(tmp_path)
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with uid_lock(lock_dir, UID, 5.0):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(10)
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: once told, take the lock itself
        code = 1
        try:
            os.close(go_write)
            os.read(go_read, 1)
            with uid_lock(lock_dir, UID, 5.0):
                code = 0
        finally:
            os._exit(code)
    os.close(go_read)
    try:
        release.set()
        thread.join(10)
        with uid_lock(lock_dir, UID, 5.0):  # while the child lives
            pass
    finally:
        os.write(go_write, b"x")
        os.close(go_write)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_does_not_keep_the_lock_a_waiting_thread_gets(
    tmp_path: Path,
) -> None:
    # A second thread waits for the lock when the process forks: the open
    # file it waits on is the one it then locks. The child must not keep it.
    lock_dir = str(tmp_path)
    taken, release = threading.Event(), threading.Event()
    waited = threading.Event()

    def holder() -> None:
        with uid_lock(lock_dir, UID, 5.0):
            taken.set()
            release.wait(30)

    def waiter() -> None:
        with uid_lock(lock_dir, UID, 10.0):
            waited.set()

    first = threading.Thread(target=holder)
    first.start()
    assert taken.wait(10)
    second = threading.Thread(target=waiter)
    second.start()
    threading.Event().wait(0.2)  # the waiter has opened the file by now
    pid = os.fork()
    if pid == 0:  # the child only lives on, holding what it inherited
        threading.Event().wait(3.0)
        os._exit(0)
    try:
        release.set()
        first.join(10)
        second.join(10)
        assert waited.is_set()
        with uid_lock(lock_dir, UID, 2.0):  # while the child lives
            pass
    finally:
        os.waitpid(pid, 0)
