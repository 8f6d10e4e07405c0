"""MirrorStore: copy files by name out of a mirror directory, checked by SHA-256."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from typing_extensions import override

from e3_typed_store.backends.base import Store
from e3_typed_store.errors import (
    DestinationError,
    DownloadError,
    IntegrityError,
    InvalidQueryError,
)

__all__ = ["MirrorConfig", "MirrorInfo", "MirrorQuery", "MirrorStore"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class MirrorQuery(TypedDict):
    """A file of the mirror, by name, and its SHA-256."""

    name: str
    sha256: str


@dataclass(frozen=True)
class MirrorInfo:
    """Metadata: a frozen dataclass satisfies ResourceInfoProtocol as it is."""

    name: str
    uid: str  # the SHA-256: stable, and a safe cache key

    # The uid is the digest the content must have: said so, its cache
    # entries live for ever (every hit is verified anyway).
    algorithm = "sha256"

    @property
    def digest(self) -> str:
        """The SHA-256 the content must have: the uid."""
        return self.uid

    def verify(self, resource_path: str) -> bool:
        """Tell whether the file at *resource_path* has the expected SHA-256."""
        digest = hashlib.sha256()
        with open(resource_path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest() == self.uid


def _field(query: Mapping[str, object], key: str) -> object:
    # The value as it came, whatever the query's type says it is.
    return query.get(key)


@dataclass(frozen=True)
class MirrorConfig:
    """Where the mirror lives."""

    root: str


class MirrorStore(Store[MirrorInfo, MirrorQuery, MirrorConfig]):
    """Copy files out of ``MirrorConfig.root``."""

    @override
    def get_resource_metadata(self, query: MirrorQuery) -> MirrorInfo:
        # Queries often come from files: check them at run time too.
        name = _field(query, "name")
        sha256 = _field(query, "sha256")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidQueryError("name", name, "expected a plain file name")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower()):
            raise InvalidQueryError("sha256", sha256, "expected 64 hex digits")
        return MirrorInfo(name=name, uid=sha256.lower())

    @override
    def download_resource_content(self, metadata: MirrorInfo, dest: str) -> str:
        # metadata is a MirrorInfo here: no cast, no isinstance.
        source = os.path.join(self.store_configuration.root, metadata.name)
        digest = hashlib.sha256()
        try:
            fd, temp = tempfile.mkstemp(dir=dest, prefix=".", suffix=".part")
        except OSError as exc:  # dest is at fault, not the mirror
            raise _destination_error(source, dest, exc) from exc
        try:
            try:
                stream = open(source, "rb")
            except OSError as exc:
                os.close(fd)
                raise DownloadError(source, str(exc)) from exc
            # Unbuffered: a write the disk refuses fails here, not again when
            # the file is closed, which would replace the error raised.
            with stream, open(fd, "wb", buffering=0) as out:
                # Hash while copying: one pass over the data.
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    view = memoryview(chunk)
                    try:
                        while view:
                            view = view[out.write(view) :]
                    except OSError as exc:  # a full disk, say
                        raise _destination_error(source, dest, exc) from exc
            if digest.hexdigest() != metadata.uid:
                raise IntegrityError(source, metadata.uid, digest.hexdigest())
            target = os.path.join(dest, metadata.name)
            try:
                os.replace(temp, target)
            except OSError as exc:  # a directory in the way, say
                raise _destination_error(source, dest, exc) from exc
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return target


def _destination_error(source: str, dest: str, exc: OSError) -> DestinationError:
    return DestinationError(source, dest, f"cannot write into {dest}: {exc}")
