"""Digests: the algorithms served, validation of expected values, hashing files."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat

from e3_typed_store._types import ALGORITHMS as ALGORITHMS
from e3_typed_store._types import Algorithm as Algorithm

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "algorithm_of",
    "file_digest",
    "normalize_digest",
]


_HEX = re.compile(r"[0-9a-fA-F]+")
# Reads of 256 KiB: the bytes are still in the core's cache when hashed
# (1 MiB reads were a few percent slower on a 1 MiB file, none faster).
_CHUNK = 256 << 10
# Read buffers kept between calls (list.pop and list.append are atomic): a
# fresh buffer is zero-filled, and often page-faulted in, at every hit.
_SPARE_BUFFERS: list[bytearray] = []
_MAX_SPARE_BUFFERS = 4
# Non-blocking: a FIFO put in place of a file does not hold the open until a
# writer comes (Windows has no FIFOs, nor the flag).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def normalize_digest(algorithm: Algorithm, value: str) -> str | None:
    """Return *value* in lower case if it is a hex digest of *algorithm*, else None.

    :param algorithm: the digest algorithm
    :param value: the candidate digest
    """
    if len(value) != ALGORITHMS[algorithm] or _HEX.fullmatch(value) is None:
        return None
    return value.lower()


def algorithm_of(digest: str) -> Algorithm | None:
    """Return the algorithm whose hex digests look like *digest*, if any.

    :param digest: a candidate hex digest
    """
    for algorithm in ALGORITHMS:
        if normalize_digest(algorithm, digest) is not None:
            return algorithm
    return None


def file_digest(path: str, algorithm: Algorithm) -> str:
    """Return the lower-case hex digest of the file at *path*.

    :param path: the file to hash
    :param algorithm: the digest algorithm
    :raises OSError: the file cannot be read, or is no regular file (a FIFO,
        which could block, or a device such as ``/dev/zero``, which never ends)
    """
    digest = hashlib.new(algorithm)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    try:
        buffer = _SPARE_BUFFERS.pop()
    except IndexError:
        buffer = bytearray(_CHUNK)
    try:
        with open(fd, "rb", buffering=0) as stream, memoryview(buffer) as view:
            while size := stream.readinto(view):
                digest.update(view[:size])
    finally:
        if len(_SPARE_BUFFERS) < _MAX_SPARE_BUFFERS:
            _SPARE_BUFFERS.append(buffer)
    return digest.hexdigest()
