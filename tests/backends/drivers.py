"""A small real store driver for the tests: it copies files out of a directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from typing import TypedDict

from typing_extensions import override

from e3_typed_store._query import required_str
from e3_typed_store.backends.base import ResourceInfo, Store
from e3_typed_store.errors import IntegrityError, InvalidQueryError, StoreError


class CopyQuery(TypedDict):
    """Which file to copy, and its sha256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class CopyConfig:
    """Where the files to copy live; where to log each copy; how slow to be."""

    source_dir: str
    log_path: str | None = None
    delay: float = 0.0


class CopyInfo(ResourceInfo):
    """Metadata of a file to copy; the uid is its sha256."""

    def __init__(self, name: str, sha256: str) -> None:
        self.name = name
        self.sha256 = sha256

    @property
    @override
    def uid(self) -> str:
        return self.sha256

    @override
    def verify(self, resource_path: str) -> bool:
        with open(resource_path, "rb") as stream:
            return hashlib.sha256(stream.read()).hexdigest() == self.sha256


class CountingCopyInfo(CopyInfo):
    """CopyInfo that records each file it verifies."""

    def __init__(self, name: str, sha256: str) -> None:
        super().__init__(name, sha256)
        self.verified: list[str] = []

    @override
    def verify(self, resource_path: str) -> bool:
        self.verified.append(resource_path)
        return super().verify(resource_path)


class HashedNameInfo(CopyInfo):
    """Metadata whose uid is the SHA-256 of a name: it looks like a digest of
    the content, and is none."""

    @property
    @override
    def uid(self) -> str:
        return sha256_of(self.name.encode())


class DigestInfo(CopyInfo):
    """Metadata that says its uid is the SHA-256 its content must have."""

    algorithm = "sha256"

    @property
    def digest(self) -> str:
        return self.sha256


def sha256_of(data: bytes) -> str:
    """Return the hex sha256 of *data*."""
    return hashlib.sha256(data).hexdigest()


class CopyStore(Store[CopyInfo, CopyQuery, CopyConfig]):
    """Copy files from ``source_dir``; count the copies made."""

    downloads = 0

    @override
    def get_resource_metadata(self, query: CopyQuery) -> CopyInfo:
        name = required_str(query, "name")
        sha256 = required_str(query, "sha256")
        if os.path.basename(name) != name:
            raise InvalidQueryError("name", name, "must be a plain file name")
        return CopyInfo(name, sha256)

    @override
    def download_resource_content(self, metadata: CopyInfo, dest: str) -> str | None:
        source = os.path.join(self.store_configuration.source_dir, metadata.name)
        if not os.path.isfile(source):
            raise StoreError(f"no file {metadata.name} in the source directory")
        self.downloads += 1
        config = self.store_configuration
        if config.log_path is not None:
            with open(config.log_path, "a", encoding="utf-8") as log:
                log.write(f"{os.getpid()} {metadata.name}\n")
        time.sleep(config.delay)
        target = os.path.join(dest, metadata.name)
        temp = target + ".part"
        shutil.copyfile(source, temp)
        if not metadata.verify(temp):
            os.unlink(temp)
            raise IntegrityError(source, metadata.sha256, "something else")
        os.replace(temp, target)
        return target


class StagingStore(CopyStore):
    """A careless driver: it leaves its download in ``staging``, a directory
    beside the ``dest`` it was given, not in it."""

    @override
    def download_resource_content(self, metadata: CopyInfo, dest: str) -> str | None:
        staging = os.path.join(os.path.dirname(os.path.abspath(dest)), "staging")
        os.makedirs(staging, exist_ok=True)
        return super().download_resource_content(metadata, staging)


class UnreadableInfo(CopyInfo):
    """Metadata whose check cannot read the file: its verify raises OSError."""

    @override
    def verify(self, resource_path: str) -> bool:
        raise PermissionError(13, "Permission denied", resource_path)


class NoneStore(Store[CopyInfo, CopyQuery, None]):
    """A store that fails the e3-core way: None and no reason."""

    @override
    def get_resource_metadata(self, query: CopyQuery) -> CopyInfo:
        return CopyInfo(query["name"], query["sha256"])

    @override
    def download_resource_content(self, metadata: CopyInfo, dest: str) -> str | None:
        return None


def fetch_in_child(config: CopyConfig, cache_dir: str, dest: str, sha256: str) -> str:
    """Fetch ``res.bin`` through a FileCache in *cache_dir*: run in a child process."""
    from e3.store.cache.backends.filecache import FileCache

    store = CopyStore(config, FileCache({"cache_dir": cache_dir}))
    info = store.get_resource_metadata({"name": "res.bin", "sha256": sha256})
    return store.fetch_resource(info, dest)
