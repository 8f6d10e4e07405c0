"""e3-core's own HTTPSimpleStore and FileCache through the same contracts.

Each rule e3-core 22.10 breaks is marked ``xfail(strict=True)`` with what
goes wrong, so the kit is shown to catch real defects, and a fixed e3-core
would turn the run red until the mark is removed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from e3.store.backends.http_simple_store import (
    HTTPSimpleStore as E3HTTPSimpleStore,
)
from e3.store.backends.http_simple_store import (
    HTTPSimpleStoreResourceInfo as E3Info,
)
from e3.store.cache.backends.base import Cache as E3Cache
from e3.store.cache.backends.filecache import FileCache as E3FileCache
from typing_extensions import override

from e3_typed_store._demo import DemoServer
from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.testing import CacheContract, StoreContract

PAYLOAD = b"e3-core contract payload\n" * 64
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()
OTHER_SHA1 = hashlib.sha1(b"something else").hexdigest()

E3Query = dict[str, str]


def _case_insensitive(directory: str) -> bool:
    """Tell whether names that differ only in case are one file in *directory*."""
    with tempfile.TemporaryDirectory(dir=directory) as probe:
        Path(probe, "case").touch()
        return os.path.exists(os.path.join(probe, "CASE"))


#: Whether pytest's tmp_path (under the temporary directory) folds case, as
#: the defaults of macOS and Windows do: e3-core's FileCache breaks there only.
_CASE_INSENSITIVE_TMP = _case_insensitive(tempfile.gettempdir())


class TestE3HTTPSimpleStore(StoreContract[E3Info, E3Query]):
    server: DemoServer

    #: Serve from the server that suggests a file name out of dest.
    hostile = False

    @pytest.fixture(autouse=True)
    def serve(self, demo_server: DemoServer, hostile_server: DemoServer) -> None:
        self.server = hostile_server if self.hostile else demo_server

    @override
    def make_cache(self, tmp_path: Path) -> CacheProtocol[CachedResource]:
        # e3-core's store with e3-core's cache, as e3 code runs them.
        return E3FileCache({"cache_dir": str(tmp_path / "cache")})

    @override
    def make_store(
        self, cache: CacheProtocol[CachedResource] | None, tmp_path: Path
    ) -> E3HTTPSimpleStore:
        # e3-core's store takes e3-core's Cache only, and no None.
        if not isinstance(cache, E3Cache):
            cache = E3FileCache({"cache_dir": str(tmp_path / "unused-cache")})
        return E3HTTPSimpleStore({}, cache)

    @override
    def good_query(self, tmp_path: Path) -> E3Query:
        return {"url": self.server.url("res.tgz"), "sha": SHA1}

    @override
    def missing_query(self, tmp_path: Path) -> E3Query:
        return {"url": self.server.url("absent.tgz"), "sha": SHA1}

    @override
    def mismatched_query(self, tmp_path: Path) -> E3Query:
        return {"url": self.server.url("res.tgz"), "sha": OTHER_SHA1}

    @override
    def bad_queries(self) -> Sequence[Mapping[str, object]]:
        return [
            {},
            {"url": self.server.url("res.tgz")},
            {"url": self.server.url("res.tgz"), "sha": "not a sha1"},
            {"url": "file:///etc/passwd", "sha": SHA1},
            {"url": 42, "sha": SHA1},
        ]

    @pytest.mark.xfail(
        strict=True,
        reason="a hit is returned where it was first downloaded, outside the dest "
        "asked for",
    )
    @override
    def test_download_lies_inside_dest_on_miss_and_hit(self, tmp_path: Path) -> None:
        super().test_download_lies_inside_dest_on_miss_and_hit(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="the cache points into the first dest; once it is removed, verify "
        "raises HashError instead of the hit being a miss",
    )
    @override
    def test_hit_survives_removal_of_first_dest(self, tmp_path: Path) -> None:
        super().test_hit_survives_removal_of_first_dest(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="an HTTP 404 makes download_resource_content return None: the "
        "reason is only logged",
    )
    @override
    def test_failed_content_download_raises_store_error(self, tmp_path: Path) -> None:
        super().test_failed_content_download_raises_store_error(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="a digest mismatch makes download_resource_content return None, "
        "no IntegrityError",
    )
    @override
    def test_mismatch_raises_store_error(self, tmp_path: Path) -> None:
        super().test_mismatch_raises_store_error(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="a dest under a regular file makes download_resource_content raise "
        "e3.fs's FSError (can't create), not a StoreError",
    )
    @override
    def test_an_unusable_dest_is_a_store_error(self, tmp_path: Path) -> None:
        super().test_an_unusable_dest_is_a_store_error(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="a write the disk refuses escapes download_resource_content as a "
        "bare OSError (File too large here), not a StoreError",
    )
    @override
    def test_a_full_disk_is_a_store_error_and_leaves_nothing(
        self, tmp_path: Path
    ) -> None:
        super().test_a_full_disk_is_a_store_error_and_leaves_nothing(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="queries are not validated: a sha that is not hex, a file:// URL "
        "and a URL that is not a string are accepted; a missing key raises "
        "e3's own StoreError, not an e3_typed_store StoreError",
    )
    @override
    def test_bad_queries_raise_store_error(self, tmp_path: Path) -> None:
        super().test_bad_queries_raise_store_error(tmp_path)


class TestE3HTTPSimpleStoreHostileServer(TestE3HTTPSimpleStore):
    """A server whose Content-Disposition names ``../escaped.tgz``."""

    hostile = True

    @pytest.mark.xfail(
        strict=True,
        reason="the server's Content-Disposition file name is joined to dest: "
        "../escaped.tgz is written next to dest, not inside it",
    )
    @override
    def test_content_lies_inside_dest_and_verifies(self, tmp_path: Path) -> None:
        super().test_content_lies_inside_dest_and_verifies(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="the server's Content-Disposition file name is joined to dest: the "
        "first download, ../escaped.tgz, lies next to dest, where no link is "
        "planted",
    )
    @override
    def test_a_link_in_dest_is_replaced_not_followed(self, tmp_path: Path) -> None:
        super().test_a_link_in_dest_is_replaced_not_followed(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="the server's Content-Disposition file name is joined to dest: "
        "../escaped.tgz is written next to dest, outside dest and the cache",
    )
    @override
    def test_downloads_write_nowhere_but_dest_and_the_cache(
        self, tmp_path: Path
    ) -> None:
        super().test_downloads_write_nowhere_but_dest_and_the_cache(tmp_path)


class TestE3FileCache(CacheContract):
    @override
    def make_cache(self, tmp_path: Path) -> E3FileCache:
        return E3FileCache({"cache_dir": str(tmp_path / "cache")})

    @pytest.mark.xfail(
        strict=True,
        reason="with its directory a regular file, set() raises e3.fs's FSError "
        "(can't create) instead of answering False",
    )
    @override
    def test_an_unusable_directory_is_a_quiet_miss(self, tmp_path: Path) -> None:
        super().test_an_unusable_directory_is_a_quiet_miss(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="set() lets the OSError of a refused write out (File too large "
        "here) instead of answering False",
    )
    @override
    def test_a_full_disk_keeps_the_previous_entry(self, tmp_path: Path) -> None:
        super().test_a_full_disk_keeps_the_previous_entry(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="delete() passes the entry path to e3.fs.rm, which globs: "
        "delete('*') removes every entry",
    )
    @override
    def test_delete_removes_that_entry_only(self, tmp_path: Path) -> None:
        super().test_delete_removes_that_entry_only(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="entries are pickles read without a guard: a damaged entry makes "
        "get() raise (ValueError, UnpicklingError, EOFError...)",
    )
    @override
    def test_corrupt_entry_is_a_miss(self, tmp_path: Path) -> None:
        super().test_corrupt_entry_is_a_miss(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="the uid is used as a file name: '/absolute/uid' and 'a/b' cannot "
        "be stored (set raises FSError), a 300-character uid is too long",
    )
    @override
    def test_any_uid_round_trips(self, tmp_path: Path) -> None:
        super().test_any_uid_round_trips(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="the uid is used as a path: '../escape' writes escape.cache next to "
        "the cache directory",
    )
    @override
    def test_uids_stay_inside_the_cache_directory(self, tmp_path: Path) -> None:
        super().test_uids_stay_inside_the_cache_directory(tmp_path)

    @pytest.mark.xfail(
        strict=True,
        reason="the uid is the file name: on a case-insensitive filesystem 'Foo' "
        "and 'foo' share an entry (get('Foo') returns foo's, seen on FAT)",
    )
    @override
    def test_uids_that_differ_in_case_name_different_files(
        self, tmp_path: Path
    ) -> None:
        super().test_uids_that_differ_in_case_name_different_files(tmp_path)

    @pytest.mark.xfail(
        _CASE_INSENSITIVE_TMP,
        strict=True,
        reason="the temporary directory is on a case-insensitive filesystem, "
        "where e3-core's file per uid makes 'Foo' and 'foo' one entry",
    )
    @override
    def test_uids_that_differ_in_case_are_different_entries(
        self, tmp_path: Path
    ) -> None:
        super().test_uids_that_differ_in_case_are_different_entries(tmp_path)
