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
