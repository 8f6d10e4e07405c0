"""Deterministic payloads served by the benchmark's server."""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass

__all__ = ["DataFile", "make_files", "size_label"]

_SEED = 0xE3
_BLOCK = 4 << 20


@dataclass(frozen=True)
class DataFile:
    """A generated payload and its digests (computed once, while writing it)."""

    name: str
    size: int
    path: str
    sha256: str
    sha1: str

    @property
    def label(self) -> str:
        return size_label(self.size)


def size_label(size: int) -> str:
    """Return ``64 KiB``, ``1 MiB``, ... for a size in bytes."""
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size % 1024 == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


def make_files(directory: str, sizes: list[int]) -> list[DataFile]:
    """Write one file per size into *directory*: seeded PRNG bytes, so the
    content (and its digests) is the same on every run and every machine.
    """
    os.makedirs(directory, exist_ok=True)
    files: list[DataFile] = []
    for size in sizes:
        name = f"data-{size_label(size).replace(' ', '')}.bin"
        path = os.path.join(directory, name)
        generator = random.Random(_SEED + size)
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1()
        with open(path, "wb") as stream:
            remaining = size
            while remaining > 0:
                block = generator.randbytes(min(_BLOCK, remaining))
                sha256.update(block)
                sha1.update(block)
                stream.write(block)
                remaining -= len(block)
        os.chmod(path, 0o644)
        files.append(DataFile(name, size, path, sha256.hexdigest(), sha1.hexdigest()))
    return files
