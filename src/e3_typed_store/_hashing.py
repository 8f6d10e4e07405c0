"""Digests: the algorithms served, validation of expected values, hashing files."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "algorithm_of",
    "file_digest",
    "normalize_digest",
]

Algorithm = Literal["sha1", "sha256", "sha512"]

#: Each served algorithm and the length of its hex digest.
ALGORITHMS: dict[Algorithm, int] = {"sha1": 40, "sha256": 64, "sha512": 128}

_HEX = re.compile(r"[0-9a-fA-F]+")
_CHUNK = 1 << 20


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
    :raises OSError: the file cannot be read
    """
    digest = hashlib.new(algorithm)
    with open(path, "rb", buffering=0) as stream:
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while size := stream.readinto(view):
            digest.update(view[:size])
    return digest.hexdigest()
