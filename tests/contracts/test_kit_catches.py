"""Each of the kit's rules catches the broken driver or cache it is there for.

The broken ones below pass every other rule; their kit subclasses are not
collected (``__test__ = False``): a rule is called directly and must fail with
a message that says what to change. The good drivers and caches run every
rule in the other modules of this directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from typing_extensions import override

from e3_typed_store.backends.base import CachedResource
from e3_typed_store.backends.file_store import (
    FileStore,
    FileStoreQuery,
    FileStoreResourceInfo,
)
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.cache.backends.filecache import FileCache
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.testing import CacheContract

from . import test_store_contracts as store_contracts

# Stores.


class _FollowsLinks(FileStore):
    """Opens ``dest/<name>`` for writing: a link already there is followed."""

    @override
    def download_resource_content(
        self, metadata: FileStoreResourceInfo, dest: str
    ) -> str:
        with open(metadata.path, "rb") as source:
            data = source.read()
        target = os.path.join(dest, metadata.file_name)
        with open(target, "wb") as stream:
            stream.write(data)
        return target


class _WritesBesideDest(FileStore):
    """Downloads right, and drops a copy in ``work`` beside ``dest``."""

    @override
    def download_resource_content(
        self, metadata: FileStoreResourceInfo, dest: str
    ) -> str:
        work = os.path.join(os.path.dirname(dest), "work")
        os.makedirs(work, exist_ok=True)
        with open(os.path.join(work, "leaked"), "wb") as stream:
            stream.write(b"a copy nobody asked for")
        return super().download_resource_content(metadata, dest)


class _RaisingInfo(FileStoreResourceInfo):
    """Its ``verify`` raises for a file that is not the resource."""

    @override
    def verify(self, resource_path: str) -> bool:
        if not super().verify(resource_path):
            raise ValueError("digest mismatch")
        return True


class _VerifyRaises(FileStore):
    @override
    def get_resource_metadata(self, query: FileStoreQuery) -> FileStoreResourceInfo:
        info = super().get_resource_metadata(query)
        return _RaisingInfo(info.location, info.path, info.digest, info.algorithm)


class _StoreKit(store_contracts.TestFileStore):
    """The file store's kit subclass, for a broken store class."""

    __test__ = False

    def __init__(self, store_class: type[FileStore]) -> None:
        self.store_class = store_class

    @override
    def make_store(
        self, cache: CacheProtocol[CachedResource] | None, tmp_path: Path
    ) -> FileStore:
        mirror = tmp_path / "mirror"
        mirror.mkdir(exist_ok=True)
        return self.store_class({"root": str(mirror)}, cache)


class _DeclaresWork(_StoreKit):
    """The same, declaring ``work`` as the store's own directory."""

    __test__ = False

    @override
    def scratch_dirs(self, tmp_path: Path) -> Sequence[Path]:
        return [tmp_path / "work"]


def test_a_link_followed_in_dest_is_caught(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"wrote through the symbolic link .*"):
        _StoreKit(_FollowsLinks).test_a_link_in_dest_is_replaced_not_followed(tmp_path)
    # Not the kit's doing: the broken store did write outside dest.
    assert (tmp_path / "outside" / "precious").read_bytes() == store_contracts.PAYLOAD


def test_a_link_in_dest_is_replaced_by_the_file_store(tmp_path: Path) -> None:
    _StoreKit(FileStore).test_a_link_in_dest_is_replaced_not_followed(tmp_path)
    assert os.path.isfile(tmp_path / "dest" / "res.tgz")
    assert not os.path.islink(tmp_path / "dest" / "res.tgz")


def test_writing_beside_dest_is_caught(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError,
        match=r"downloading wrote \['work', 'work/leaked'\] under .*, outside dest "
        r"and the cache directory: write only inside dest",
    ):
        _StoreKit(
            _WritesBesideDest
        ).test_downloads_write_nowhere_but_dest_and_the_cache(tmp_path)


def test_a_declared_scratch_dir_may_be_written(tmp_path: Path) -> None:
    _DeclaresWork(
        _WritesBesideDest
    ).test_downloads_write_nowhere_but_dest_and_the_cache(tmp_path)


def test_a_verify_that_raises_is_told_to_return_false(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError,
        match=r"verify raised ValueError\('digest mismatch'\) for a corrupted file: "
        r"it must return False .*, not raise",
    ):
        _StoreKit(_VerifyRaises).test_verify_rejects_a_corrupted_file(tmp_path)


# Caches.


class _CaseFoldingCache(MemoryCache[CachedResource]):
    """Folds uids to lower case, as a NOCASE database column does."""

    @override
    def get(
        self, uid: str, default: CachedResource | None = None
    ) -> CachedResource | None:
        return super().get(uid.lower(), default)

    @override
    def set(self, uid: str, value: CachedResource, timeout: int = 86400) -> bool:
        return super().set(uid.lower(), value, timeout)

    @override
    def delete(self, uid: str) -> None:
        super().delete(uid.lower())


class _MemoizingFileCache(FileCache):
    """Keeps each entry it read: a delete through another instance is missed."""

    def __init__(self, directory: str) -> None:
        super().__init__({"cache_dir": directory})
        self._read: dict[str, CachedResource] = {}

    @override
    def get(
        self, uid: str, default: CachedResource | None = None
    ) -> CachedResource | None:
        if uid not in self._read:
            found = super().get(uid)
            if found is None:
                return default
            self._read[uid] = found
        return self._read[uid]

    @override
    def set(self, uid: str, value: CachedResource, timeout: int = 86400) -> bool:
        self._read.pop(uid, None)
        return super().set(uid, value, timeout)

    @override
    def delete(self, uid: str) -> None:
        self._read.pop(uid, None)
        super().delete(uid)

    @override
    def clear(self) -> None:
        self._read.clear()
        super().clear()


class _StaleHasResource(MemoryCache[CachedResource]):
    """Answers ``has_resource`` and ``in`` from the uids ever set."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    @override
    def set(self, uid: str, value: CachedResource, timeout: int = 86400) -> bool:
        self._seen.add(uid)
        return super().set(uid, value, timeout)

    @override
    def has_resource(self, uid: str) -> bool:
        return uid in self._seen or super().has_resource(uid)

    @override
    def __contains__(self, uid: str) -> bool:
        return self.has_resource(uid)


class _CacheKit(CacheContract):
    """The cache kit, for caches that *build* makes of ``tmp_path``."""

    __test__ = False

    def __init__(self, build: Callable[[Path], CacheProtocol[CachedResource]]) -> None:
        self.build = build

    @override
    def make_cache(self, tmp_path: Path) -> CacheProtocol[CachedResource]:
        return self.build(tmp_path)


def test_uids_folded_to_lower_case_are_caught(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError,
        match=r"get\('Foo'\) returned CachedResource\(uid='FOO'.* never fold case",
    ):
        _CacheKit(
            lambda _: _CaseFoldingCache()
        ).test_uids_that_differ_in_case_are_different_entries(tmp_path)


def test_an_entry_kept_per_instance_is_caught(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError,
        match=r"after delete\('res'\) through another instance \(another process\), "
        r"get\(\) and has_resource\(\) and 'in' still find the entry on the first",
    ):
        _CacheKit(
            lambda tmp_path: _MemoizingFileCache(str(tmp_path / "cache"))
        ).test_a_delete_through_another_instance_is_seen(tmp_path)


def test_a_cache_of_separate_instances_is_skipped(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="share no entries"):
        _CacheKit(
            lambda _: MemoryCache[CachedResource]()
        ).test_a_delete_through_another_instance_is_seen(tmp_path)


def test_has_resource_after_delete_is_caught(tmp_path: Path) -> None:
    with pytest.raises(
        AssertionError,
        match=r"after delete\('res'\), has_resource\(\) and 'in' still answer True",
    ):
        _CacheKit(
            lambda _: _StaleHasResource()
        ).test_delete_and_clear_empty_has_resource_and_in(tmp_path)
