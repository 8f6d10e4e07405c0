"""Hashing files: right digests whatever the size, from any number of threads."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from e3_typed_store._hashing import Algorithm, file_digest

MIB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 17])
@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_file_digest_matches_hashlib(
    tmp_path: Path, size: int, algorithm: Algorithm
) -> None:
    data = os.urandom(size)
    path = tmp_path / "data"
    path.write_bytes(data)
    expected = hashlib.new(algorithm, data).hexdigest()
    assert file_digest(str(path), algorithm) == expected


def test_concurrent_digests_do_not_share_a_buffer(tmp_path: Path) -> None:
    # Read buffers are reused between calls: threads hashing at the same time
    # must never read into one another's.
    files: list[tuple[str, str]] = []
    for index in range(8):
        data = bytes([index]) * (2 * MIB + index * 4099)
        path = tmp_path / f"f{index}"
        path.write_bytes(data)
        files.append((str(path), hashlib.sha256(data).hexdigest()))
    wrong: list[str] = []

    def hash_many(path: str, expected: str) -> None:
        for _ in range(20):
            if file_digest(path, "sha256") != expected:
                wrong.append(path)

    threads = [threading.Thread(target=hash_many, args=pair) for pair in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_missing_file_raises_and_the_next_digest_is_right(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_digest(str(tmp_path / "absent"), "sha256")
    path = tmp_path / "present"
    path.write_bytes(b"abc")
    assert file_digest(str(path), "sha256") == hashlib.sha256(b"abc").hexdigest()


def hashed_within(path: str, seconds: float) -> BaseException | str | None:
    """Hash *path* in a thread; its result or error, None if it did not end."""
    outcome: list[BaseException | str] = []

    def run() -> None:
        try:
            outcome.append(file_digest(path, "sha256"))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return outcome[0] if outcome else None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    # A FIFO in place of a kept copy would hold the open until a writer came.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome = hashed_within(str(fifo), 10)
    assert isinstance(outcome, OSError), outcome
    assert "not a regular file" in str(outcome)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_device_that_never_ends_is_refused(tmp_path: Path) -> None:
    outcome = hashed_within("/dev/zero", 10)
    assert isinstance(outcome, OSError), outcome


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        file_digest(str(tmp_path), "sha256")
