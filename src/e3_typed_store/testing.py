"""Contract suites for store drivers and cache backends, to run with pytest.

A driver author subclasses :class:`StoreContract` (or :class:`CacheContract`)
in a test module, under a name pytest collects, and implements a few hooks;
every rule a driver keeps then runs as a test against the real driver::

    from pathlib import Path

    from e3_typed_store.testing import StoreContract


    class TestMirrorStore(StoreContract[MirrorInfo, MirrorQuery]):
        def make_store(self, cache, tmp_path: Path) -> MirrorStore:
            return MirrorStore(MirrorConfig(str(tmp_path / "mirror")), cache)

        def good_query(self, tmp_path: Path) -> MirrorQuery:
            (tmp_path / "mirror").mkdir(exist_ok=True)
            (tmp_path / "mirror" / "x.tgz").write_bytes(b"payload")
            return {"name": "x.tgz", "sha256": sha256(b"payload")}

        def missing_query(self, tmp_path: Path) -> MirrorQuery:
            return {"name": "absent.tgz", "sha256": sha256(b"absent")}

        def bad_queries(self) -> list[Mapping[str, object]]:
            return [{}, {"name": "../x", "sha256": "0" * 64}]

Each test method is one rule, named after it; when a driver breaks a rule, the
assertion message says what the driver must change. A rule a driver knowingly
breaks is overridden in the subclass under ``@pytest.mark.xfail(strict=True,
reason=...)``, calling ``super()``, so that the day it is fixed the run says so.

Hooks run inside the test, after pytest's fixtures: one that needs a server
or other state can read it from ``self``, set by an autouse fixture of the
subclass (pytest binds fixture methods to the test's instance).

This module imports pytest; importing :mod:`e3_typed_store` never imports it.
It registers no pytest plugin: subclass the classes in your own test modules.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import pytest

from e3_typed_store._faults import call_with_file_size_limit
from e3_typed_store._fs import is_within, safe_component
from e3_typed_store._plugins import CACHE_API, STORE_API, check_driver
from e3_typed_store._types import CachedResource
from e3_typed_store.backends.base import ResourceInfoProtocol, StoreProtocol
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.errors import StoreError

__all__ = ["CacheContract", "StoreContract", "corrupt_file"]

InfoT = TypeVar("InfoT", bound=ResourceInfoProtocol)
QueryT = TypeVar("QueryT", bound=Mapping[str, object])

#: What the file a link planted in dest points to holds, to see it unchanged.
_PRECIOUS = b"a file outside dest that no download may change\n"

#: Uids a cache must keep inside its directory, each under its own entry.
_HOSTILE_UIDS = ("../escape", "/absolute/uid", "a/b", "..", "*", "x" * 300, "é\u202e")


def corrupt_file(path: str) -> None:
    """Change the content of the file at *path* in place, keeping its size.

    The first byte is inverted; an empty file gets one byte.

    :param path: the file to damage

    .. versionadded:: 0.1
    """
    with open(path, "r+b") as stream:
        first = stream.read(1)
        stream.seek(0)
        stream.write(bytes([first[0] ^ 0xFF]) if first else b"\0")


def _entries(directory: Path) -> set[str]:
    """List every path under *directory*, relative to it."""
    found: set[str] = set()
    for parent, dirs, files in os.walk(directory):
        for name in [*dirs, *files]:
            found.add(os.path.relpath(os.path.join(parent, name), directory))
    return found


def _at_or_under(path: str, directory: str) -> bool:
    """Tell whether *path* is *directory* or lies below it, by name alone.

    Links are not resolved: a link made inside *directory* lies inside it,
    wherever it points.
    """
    path = os.path.normpath(os.path.abspath(path))
    directory = os.path.normpath(os.path.abspath(directory))
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _cache_dir(cache: object, tmp_path: Path) -> str:
    """Return the directory *cache* keeps its files in: its ``cache_dir``, or
    else ``tmp_path / "cache"``, where the kit's hooks put a cache's directory."""
    cache_dir: object = getattr(cache, "cache_dir", None)
    return cache_dir if isinstance(cache_dir, str) else str(tmp_path / "cache")


def _local_path(entry: object) -> str | None:
    """Return the ``local_path`` a cache entry records, if it records one."""
    local_path: object = getattr(entry, "local_path", None)
    return local_path if isinstance(local_path, str) else None


class StoreContract(Generic[InfoT, QueryT]):
    """The rules every store driver keeps, as pytest tests to inherit.

    Implement :meth:`make_store`, :meth:`good_query`, :meth:`missing_query`
    and :meth:`bad_queries`; override :meth:`make_cache`,
    :meth:`mismatched_query`, :meth:`corrupt` and :meth:`scratch_dirs` when
    the defaults do not fit.

    .. versionadded:: 0.1
    """

    # Hooks.

    def make_store(
        self, cache: CacheProtocol[CachedResource] | None, tmp_path: Path
    ) -> StoreProtocol[InfoT, QueryT]:
        """Build the store under test.

        :param cache: the cache it must record downloads in
        :param tmp_path: a directory private to the test
        """
        raise NotImplementedError("implement make_store(cache, tmp_path)")

    def make_cache(self, tmp_path: Path) -> CacheProtocol[CachedResource]:
        """Build the cache handed to :meth:`make_store`.

        The default is this package's ``FileCache`` in ``tmp_path / "cache"``.

        :param tmp_path: a directory private to the test
        """
        from e3_typed_store.cache.backends.filecache import FileCache

        return FileCache({"cache_dir": str(tmp_path / "cache")})

    def good_query(self, tmp_path: Path) -> QueryT:
        """Return a query for a resource that exists and downloads.

        :param tmp_path: a directory private to the test
        """
        raise NotImplementedError("implement good_query(tmp_path)")

    def missing_query(self, tmp_path: Path) -> QueryT:
        """Return a valid query whose download fails: the resource is absent.

        :param tmp_path: a directory private to the test
        """
        raise NotImplementedError("implement missing_query(tmp_path)")

    def mismatched_query(self, tmp_path: Path) -> QueryT | None:
        """Return a query for an existing resource whose content does not verify.

        The default, None, skips the rules that need one.

        :param tmp_path: a directory private to the test
        """
        return None

    def bad_queries(self) -> Sequence[Mapping[str, object]]:
        """Return malformed queries: ``get_resource_metadata`` must refuse each."""
        raise NotImplementedError("implement bad_queries()")

    def corrupt(self, path: str) -> None:
        """Damage a downloaded copy of the resource so that it no longer verifies.

        The default inverts its first byte (see :func:`corrupt_file`).

        :param path: a copy of the resource
        """
        corrupt_file(path)

    def scratch_dirs(self, tmp_path: Path) -> Sequence[Path]:
        """Return the directories under *tmp_path* the store may write in,
        besides the ``dest`` asked for and the cache's directory.

        :meth:`test_downloads_write_nowhere_but_dest_and_the_cache` fails a
        download that writes anywhere else under *tmp_path*. The default is
        none; a store whose configuration names a work directory of its own
        (a clone of a repository it serves from, say) returns it here.

        :param tmp_path: a directory private to the test

        .. versionadded:: 0.1
        """
        return ()

    # Helpers.

    def _built(
        self, tmp_path: Path
    ) -> tuple[CacheProtocol[CachedResource], StoreProtocol[InfoT, QueryT], InfoT]:
        cache = self.make_cache(tmp_path)
        store = self.make_store(cache, tmp_path)
        return cache, store, store.get_resource_metadata(self.good_query(tmp_path))

    @staticmethod
    def _dest(tmp_path: Path, name: str) -> str:
        dest = tmp_path / name
        dest.mkdir(exist_ok=True)
        return str(dest)

    def _assert_leaves_nothing(
        self,
        cache: CacheProtocol[CachedResource],
        dest: str,
        uid: str,
        what: str,
    ) -> None:
        left = sorted(os.listdir(dest)) if os.path.isdir(dest) else []
        assert left == [], (
            f"{what} left {left} in dest: write under a temporary name and remove "
            "it on every failure, rename into place only once verified"
        )
        assert cache.get(uid) is None, (
            f"{what} left a cache entry for {uid!r}: record only verified downloads"
        )

    # Rules.

    def test_store_conforms_to_store_protocol(self, tmp_path: Path) -> None:
        """The store offers the store API, by name and parameter names."""
        store = self.make_store(self.make_cache(tmp_path), tmp_path)
        assert isinstance(store, StoreProtocol), (
            f"{type(store).__qualname__} lacks a method of StoreProtocol"
        )
        problems = check_driver(type(store), STORE_API)
        assert problems == [], (
            f"{type(store).__qualname__} departs from the store API: {problems}"
        )

    def test_metadata_conforms_to_resource_info_protocol(self, tmp_path: Path) -> None:
        """Metadata has a ``uid`` and a ``verify(resource_path)``."""
        _, _, info = self._built(tmp_path)
        assert isinstance(info, ResourceInfoProtocol), (
            f"{type(info).__qualname__} needs a uid and verify(resource_path)"
        )
        assert isinstance(info.uid, str), "uid must be a str"

    def test_uid_is_stable(self, tmp_path: Path) -> None:
        """One resource has one uid, whichever store instance computes it."""
        _, store, info = self._built(tmp_path)
        query = self.good_query(tmp_path)
        again = store.get_resource_metadata(query).uid
        other = self.make_store(None, tmp_path).get_resource_metadata(query).uid
        assert info.uid == again == other, (
            f"uids {info.uid!r}, {again!r}, {other!r} for one query: derive the uid "
            "from the query alone (a digest, say), never from time or state"
        )

    def test_uid_is_a_safe_name(self, tmp_path: Path) -> None:
        """A uid is a short name of lower-case letters, digits, ``.``, ``_``, ``-``."""
        _, _, info = self._built(tmp_path)
        assert safe_component(info.uid) == info.uid, (
            f"uid {info.uid!r} is not a safe file name: use a digest or another "
            "name of at most 128 lower-case letters, digits, '.', '_', '-' "
            "starting with a letter or digit (upper case is not safe on a "
            "case-insensitive filesystem)"
        )

    def test_content_lies_inside_dest_and_verifies(self, tmp_path: Path) -> None:
        """``download_resource_content`` returns a verified file inside dest."""
        _, store, info = self._built(tmp_path)
        dest = self._dest(tmp_path, "dest")
        path = store.download_resource_content(info, dest)
        assert path is not None, (
            "download_resource_content returned None for a good query"
        )
        assert is_within(path, dest), (
            f"{path} is not inside {dest}: build the path from dest and a safe "
            "base name, never from a name taken from the source"
        )
        assert os.path.isfile(path), f"{path} is not a file"
        assert info.verify(path), f"verify({path}) rejects what the store downloaded"

    def test_verify_rejects_a_corrupted_file(self, tmp_path: Path) -> None:
        """``verify`` returns False for a file that is not the resource."""
        _, store, info = self._built(tmp_path)
        path = store.download_resource_content(info, self._dest(tmp_path, "dest"))
        assert path is not None, "download_resource_content returned None"
        copy = os.path.join(self._dest(tmp_path, "corrupted"), os.path.basename(path))
        shutil.copyfile(path, copy)
        self.corrupt(copy)
        try:
            accepted = info.verify(copy)
        except Exception as exc:
            raise AssertionError(
                f"verify raised {exc!r} for a corrupted file: it must return "
                "False for a file that is not the resource, not raise (catch "
                "the digest mismatch and the OSError of reading it)"
            ) from exc
        assert not accepted, (
            "verify accepted a corrupted file: compare the content with a digest"
        )

    def test_download_lies_inside_dest_on_miss_and_hit(self, tmp_path: Path) -> None:
        """``download_resource`` returns a verified file inside the dest asked."""
        _, store, info = self._built(tmp_path)
        for name in ("first", "second"):
            dest = self._dest(tmp_path, name)
            path = store.download_resource(info, dest)
            assert path is not None, f"download_resource returned None ({name} call)"
            assert is_within(path, dest), (
                f"{path} is not inside {dest} ({name} call): a hit recorded "
                "elsewhere must be linked or copied into dest"
            )
            assert info.verify(path), f"{path} does not verify ({name} call)"

    def test_a_link_in_dest_is_replaced_not_followed(self, tmp_path: Path) -> None:
        """A symbolic link in ``dest`` where the resource goes is replaced by
        the downloaded file, never written through: the file it points to,
        outside ``dest``, is left as it was.

        The link takes the place of a first download; the second is a miss
        (nothing was recorded in the cache), so the driver's own
        ``download_resource_content`` writes it, through ``download_resource``.
        Skipped where symbolic links cannot be made.
        """
        _, store, info = self._built(tmp_path)
        dest = self._dest(tmp_path, "dest")
        first = store.download_resource_content(info, dest)
        assert first is not None, "download_resource_content returned None (first call)"
        assert is_within(first, dest), (
            f"{first} is not inside {dest} (first call): build the path from "
            "dest and a safe base name, never from a name taken from the source"
        )
        outside = self._dest(tmp_path, "outside")
        victim = os.path.join(outside, "precious")
        with open(victim, "wb") as stream:
            stream.write(_PRECIOUS)
        os.remove(first)
        try:
            os.symlink(victim, first)
        except (OSError, NotImplementedError) as exc:
            pytest.skip(f"cannot make a symbolic link here: {exc!r}")
        try:
            path = store.download_resource(info, dest)
        except Exception as exc:
            raise AssertionError(
                f"download_resource raised {exc!r} with a symbolic link at "
                f"{first}: replace the link, as any file already there"
            ) from exc
        with open(victim, "rb") as stream:
            kept = stream.read() == _PRECIOUS
        assert kept, (
            f"downloading into {dest} wrote through the symbolic link {first} "
            f"into {victim}, outside dest: never open a name in dest for "
            "writing; write a new temporary file there (O_EXCL, mkstemp) and "
            "rename it over the name, which replaces a link"
        )
        assert path is not None, (
            f"download_resource returned None with a symbolic link at {first}: "
            "rename the downloaded file over the link"
        )
        assert not os.path.islink(path) and os.path.isfile(path), (
            f"{path} is a symbolic link or no regular file: rename the "
            "downloaded file over what is in dest"
        )
        assert is_within(path, dest), f"{path} is not inside {dest}"

    def test_downloads_write_nowhere_but_dest_and_the_cache(
        self, tmp_path: Path
    ) -> None:
        """A download, miss then hit, adds nothing under ``tmp_path`` but in
        the ``dest`` asked for, the cache's directory (its ``cache_dir``, else
        ``tmp_path / "cache"``) and :meth:`scratch_dirs`.

        What the hooks make (a mirror, say) is there before the downloads.
        """
        cache, store, info = self._built(tmp_path)
        dests = {name: self._dest(tmp_path, name) for name in ("first", "second")}
        before = _entries(tmp_path)
        for name, dest in dests.items():
            path = store.download_resource(info, dest)
            assert path is not None, f"download_resource returned None ({name} call)"
        allowed = [
            *dests.values(),
            _cache_dir(cache, tmp_path),
            *(str(directory) for directory in self.scratch_dirs(tmp_path)),
        ]
        outside = sorted(
            entry
            for entry in _entries(tmp_path) - before
            if not any(_at_or_under(str(tmp_path / entry), ok) for ok in allowed)
        )
        assert outside == [], (
            f"downloading wrote {outside} under {tmp_path}, outside dest and the "
            "cache directory: write only inside dest (a temporary name there, "
            "renamed into place) and let the cache keep its own files; a work "
            "directory the configuration names is declared by scratch_dirs()"
        )

    def test_hit_survives_removal_of_first_dest(self, tmp_path: Path) -> None:
        """Deleting the directory of the first download does not break the cache."""
        _, store, info = self._built(tmp_path)
        first = self._dest(tmp_path, "first")
        assert store.download_resource(info, first) is not None, (
            "download_resource returned None (first call)"
        )
        shutil.rmtree(first)
        second = self._dest(tmp_path, "second")
        try:
            path = store.download_resource(info, second)
        except Exception as exc:
            raise AssertionError(
                f"the second download raised {exc!r} once the first dest was "
                "removed: a cached file that is gone is a miss"
            ) from exc
        assert path is not None and info.verify(path), (
            "no verified file after the first dest was removed"
        )

    def test_corrupted_cached_file_is_fetched_again(self, tmp_path: Path) -> None:
        """A cached copy that no longer verifies is a miss, not an error."""
        cache, store, info = self._built(tmp_path)
        assert (
            store.download_resource(info, self._dest(tmp_path, "first")) is not None
        ), "download_resource returned None (first call)"
        recorded = _local_path(cache.get(info.uid))
        assert recorded is not None, (
            "download_resource recorded no CachedResource for the resource"
        )
        self.corrupt(recorded)
        second = self._dest(tmp_path, "second")
        try:
            path = store.download_resource(info, second)
        except Exception as exc:
            raise AssertionError(
                f"a corrupted cached copy made download_resource raise {exc!r}"
            ) from exc
        assert path is not None and info.verify(path), (
            "a corrupted cached copy was served or not replaced: verify every hit"
        )

    def test_failed_download_leaves_nothing(self, tmp_path: Path) -> None:
        """A resource that cannot be had: None, an empty dest, no cache entry."""
        cache = self.make_cache(tmp_path)
        store = self.make_store(cache, tmp_path)
        info = store.get_resource_metadata(self.missing_query(tmp_path))
        dest = self._dest(tmp_path, "dest")
        try:
            path = store.download_resource(info, dest)
        except Exception as exc:
            raise AssertionError(
                f"download_resource raised {exc!r}: on failure it logs the "
                "reason and returns None (fetch_resource raises)"
            ) from exc
        assert path is None, f"download_resource returned {path} for a failure"
        self._assert_leaves_nothing(cache, dest, info.uid, "a failed download")

    def test_failed_content_download_raises_store_error(self, tmp_path: Path) -> None:
        """``download_resource_content`` says why it failed with a StoreError."""
        store = self.make_store(None, tmp_path)
        info = store.get_resource_metadata(self.missing_query(tmp_path))
        dest = self._dest(tmp_path, "dest")
        problem = _unless_store_error(
            lambda: store.download_resource_content(info, dest),
            "download_resource_content of a resource that cannot be had",
            "raise a StoreError subclass (DownloadError...) saying why",
        )
        assert problem is None, problem
        left = sorted(os.listdir(dest))
        assert left == [], f"a failed download left {left} in dest"

    def _mismatched(
        self, tmp_path: Path
    ) -> tuple[CacheProtocol[CachedResource], StoreProtocol[InfoT, QueryT], InfoT]:
        cache = self.make_cache(tmp_path)
        store = self.make_store(cache, tmp_path)
        query = self.mismatched_query(tmp_path)
        if query is None:
            pytest.skip("mismatched_query() is not implemented")
        return cache, store, store.get_resource_metadata(query)

    def test_mismatch_leaves_nothing(self, tmp_path: Path) -> None:
        """Content that does not verify is never kept in dest or the cache."""
        cache, store, info = self._mismatched(tmp_path)
        dest = self._dest(tmp_path, "content")
        try:
            store.download_resource_content(info, dest)
        except Exception:  # noqa: BLE001 - what it raises is another rule
            pass
        self._assert_leaves_nothing(cache, dest, info.uid, "a mismatched download")
        dest = self._dest(tmp_path, "dest")
        try:
            path = store.download_resource(info, dest)
        except Exception as exc:
            raise AssertionError(
                f"download_resource raised {exc!r} for content that does not "
                "verify: log the reason and return None"
            ) from exc
        assert path is None, (
            f"download_resource returned {path} for content that does not verify"
        )
        self._assert_leaves_nothing(cache, dest, info.uid, "a mismatched download")

    def test_mismatch_raises_store_error(self, tmp_path: Path) -> None:
        """``download_resource_content`` of content that does not verify raises."""
        _, store, info = self._mismatched(tmp_path)
        dest = self._dest(tmp_path, "dest")
        problem = _unless_store_error(
            lambda: store.download_resource_content(info, dest),
            "download_resource_content of content that does not verify",
            "check the digest and raise IntegrityError(url, expected, actual)",
        )
        assert problem is None, problem

    def test_an_unusable_dest_is_a_store_error(self, tmp_path: Path) -> None:
        """A ``dest`` that cannot be a directory (under a regular file) raises a
        StoreError from ``download_resource_content``, and harms nothing."""
        store = self.make_store(None, tmp_path)
        info = store.get_resource_metadata(self.good_query(tmp_path))
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"a regular file")
        dest = str(blocker / "dest")
        problem = _unless_store_error(
            lambda: store.download_resource_content(info, dest),
            "download_resource_content into a dest under a regular file",
            "translate the OSError of the destination into a DestinationError "
            "(a StoreError) that names it",
        )
        assert problem is None, problem
        assert blocker.read_bytes() == b"a regular file", "the blocking file changed"

    def test_a_full_disk_is_a_store_error_and_leaves_nothing(
        self, tmp_path: Path
    ) -> None:
        """A disk that refuses writes: a StoreError, and nothing left in dest.

        ``download_resource_content`` of the good resource runs in a forked
        child whose files may not grow past zero bytes (``RLIMIT_FSIZE``): the
        kernel refuses each write there as a full disk refuses it. Linux only.
        """
        if not sys.platform.startswith("linux"):
            pytest.skip("needs fork and RLIMIT_FSIZE, as on Linux")
        store = self.make_store(None, tmp_path)
        info = store.get_resource_metadata(self.good_query(tmp_path))
        dest = self._dest(tmp_path, "dest")
        outcome = _with_no_room_to_write(
            partial(store.download_resource_content, info, dest)
        )
        if outcome.raised is None:
            pytest.skip(
                "the download wrote no byte (an empty resource, a link or a "
                "clone?): nothing to judge"
            )
        assert outcome.store_error, (
            f"download_resource_content on a full disk raised {outcome.raised}: "
            "translate the OSError of a refused write into a DestinationError "
            "(a StoreError) that names dest"
        )
        left = sorted(os.listdir(dest))
        assert left == [], (
            f"a download the disk refused left {left} in dest: remove the "
            "temporary file on every failure, including one raised while "
            "closing it"
        )

    def test_bad_queries_raise_store_error(self, tmp_path: Path) -> None:
        """Each malformed query raises a StoreError subclass, nothing else."""
        store = self.make_store(None, tmp_path)
        queries = self.bad_queries()
        assert queries, "bad_queries() returned no query"
        problems = [
            _unless_store_error(
                partial(_call_unchecked, store.get_resource_metadata, query),
                f"get_resource_metadata({query!r})",
                "validate queries at run time and raise "
                "InvalidQueryError(key, value, reason)",
            )
            for query in queries
        ]
        found = [problem for problem in problems if problem is not None]
        assert found == [], "\n".join(found)


class _ChildOutcome(NamedTuple):
    """What an action run in a child did: ``repr`` of what it raised (None if
    nothing), whether that is a StoreError, and ``repr`` of what it returned."""

    raised: str | None
    store_error: bool
    returned: str | None = None


def _outcome_of(action: Callable[[], object]) -> _ChildOutcome:
    """Run *action*; say what it raised or returned."""
    try:
        result = action()
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        return _ChildOutcome(repr(exc), isinstance(exc, StoreError))
    return _ChildOutcome(None, False, repr(result))


def _with_no_room_to_write(action: Callable[[], object]) -> _ChildOutcome:
    """Run *action* in a forked child where no file may grow; report."""
    try:
        outcome = call_with_file_size_limit(0, partial(_outcome_of, action))
    except TimeoutError as exc:
        raise AssertionError(f"the action on a full disk did not end: {exc}") from exc
    except ChildProcessError as exc:
        raise AssertionError(
            f"the action on a full disk ended the process ({exc}): a refused "
            "write must raise, not crash"
        ) from exc
    assert isinstance(outcome, _ChildOutcome)
    return outcome


def _call_unchecked(function: object, argument: object) -> object:
    """Call *function* with an argument its signature may refuse: outside input."""
    assert callable(function)
    return function(argument)


def _unless_store_error(
    action: Callable[[], object], what: str, fix: str
) -> str | None:
    """Run *action*, which must raise a StoreError; else say what to *fix*."""
    try:
        result = action()
    except StoreError:
        return None
    except Exception as exc:  # noqa: BLE001 - reported to the driver's author
        return f"{what} raised {exc!r}: {fix}"
    return f"{what} returned {result!r}: {fix}"


def _still_present(cache: CacheProtocol[CachedResource], uid: str) -> list[str]:
    """Name which of ``has_resource`` and ``in`` find *uid* in *cache*."""
    return [
        *(["has_resource()"] if cache.has_resource(uid) else []),
        *(["'in'"] if uid in cache else []),
    ]


class CacheContract:
    """The rules every cache backend keeps, as pytest tests to inherit.

    Implement :meth:`make_cache`; override :meth:`corrupt_entry` for a
    backend whose entries are not files at ``uid_to_file(uid)``, and
    :meth:`shares_entries` when its instances share entries without a
    ``cache_dir``, or have one and share nothing.

    .. versionadded:: 0.1
    """

    # Hooks.

    def make_cache(self, tmp_path: Path) -> CacheProtocol[CachedResource]:
        """Build an empty cache under test.

        :param tmp_path: a directory private to the test; a cache with a
            directory puts it in ``tmp_path / "cache"``
        """
        raise NotImplementedError("implement make_cache(tmp_path)")

    def corrupt_entry(self, cache: CacheProtocol[CachedResource], uid: str) -> bool:
        """Damage the stored entry of *uid*; return False if it cannot be done.

        The default overwrites the file ``cache.uid_to_file(uid)`` names, when
        the cache has that method, with bytes that are no entry.

        :param cache: the cache holding the entry
        :param uid: the entry's uid
        """
        uid_to_file: object = getattr(cache, "uid_to_file", None)
        if not callable(uid_to_file):
            return False
        path = uid_to_file(uid)
        if not isinstance(path, str) or not os.path.isfile(path):
            return False
        with open(path, "wb") as stream:
            stream.write(b"\x80garbage, not an entry")
        return True

    def shares_entries(self, cache: CacheProtocol[CachedResource]) -> bool:
        """Tell whether two caches :meth:`make_cache` builds on one ``tmp_path``
        share their entries, as two processes on one cache directory do.

        :meth:`test_a_delete_through_another_instance_is_seen` runs only then.
        The default: when *cache* has a ``cache_dir`` (a str). Override it for
        a cache shared some other way (a database, a server), or kept apart
        despite its ``cache_dir``.

        :param cache: a cache :meth:`make_cache` built

        .. versionadded:: 0.1
        """
        return isinstance(getattr(cache, "cache_dir", None), str)

    def value(self, uid: str, tmp_path: Path) -> CachedResource:
        """Return the value stored under *uid* by the rules.

        :param uid: the uid
        :param tmp_path: a directory private to the test
        """
        return CachedResource(uid=uid, local_path=str(tmp_path / "payload"))

    # Rules.

    def test_cache_conforms_to_cache_protocol(self, tmp_path: Path) -> None:
        """The cache offers the cache API, by name and parameter names."""
        cache = self.make_cache(tmp_path)
        assert isinstance(cache, CacheProtocol), (
            f"{type(cache).__qualname__} lacks a method of CacheProtocol"
        )
        problems = check_driver(type(cache), CACHE_API)
        assert problems == [], (
            f"{type(cache).__qualname__} departs from the cache API: {problems}"
        )

    def test_miss(self, tmp_path: Path) -> None:
        """An unknown uid is a miss for ``get``, ``has_resource`` and ``in``."""
        cache = self.make_cache(tmp_path)
        assert cache.get("absent") is None, "get() of an unknown uid is not None"
        assert not cache.has_resource("absent"), "has_resource() of an unknown uid"
        assert "absent" not in cache, "an unknown uid is 'in' the cache"

    def test_set_then_hit(self, tmp_path: Path) -> None:
        """A value set is got back, equal, and the uid is then present."""
        cache = self.make_cache(tmp_path)
        value = self.value("res", tmp_path)
        assert cache.set("res", value) is True, "set() did not answer True"
        assert cache.get("res") == value, "get() does not give back what set() stored"
        assert cache.has_resource("res"), "has_resource() is False after set()"
        assert "res" in cache, "the uid is not 'in' the cache after set()"

    def test_set_replaces(self, tmp_path: Path) -> None:
        """A second ``set`` of a uid replaces the first value."""
        cache = self.make_cache(tmp_path)
        cache.set("res", self.value("res", tmp_path / "one"))
        cache.set("res", self.value("res", tmp_path / "two"))
        assert cache.get("res") == self.value("res", tmp_path / "two"), (
            "set() of a uid already stored did not replace its value"
        )

    def test_an_unusable_directory_is_a_quiet_miss(self, tmp_path: Path) -> None:
        """A cache whose directory is a regular file: ``set`` answers False,
        ``get`` misses, nothing raises and the file is left alone.

        Skipped for a cache that does not keep its entries in
        ``tmp_path / "cache"`` (see :meth:`make_cache`).
        """
        blocker = tmp_path / "cache"
        blocker.write_bytes(b"a regular file")
        try:
            cache = self.make_cache(tmp_path)
        except Exception as exc:
            raise AssertionError(
                f"building a cache whose directory is a regular file raised "
                f"{exc!r}: build it, and let set() answer False"
            ) from exc
        try:
            stored = cache.set("res", self.value("res", tmp_path))
            got = cache.get("res")
        except Exception as exc:
            raise AssertionError(
                f"a cache whose directory is a regular file raised {exc!r}: "
                "set() answers False (and logs why), get() misses"
            ) from exc
        if stored and got is not None:
            pytest.skip("the cache keeps nothing in tmp_path / 'cache' (in memory?)")
        assert stored is False, f"set() answered {stored!r}, not False"
        assert got is None, f"get() of an entry never stored gave {got!r}"
        assert blocker.read_bytes() == b"a regular file", "the blocking file changed"

    def test_a_full_disk_keeps_the_previous_entry(self, tmp_path: Path) -> None:
        """``set`` on a disk that refuses writes: False, the previous entry kept.

        The ``set`` runs in a forked child whose files may not grow past zero
        bytes (``RLIMIT_FSIZE``): the kernel refuses each write there as a full
        disk refuses it. Linux only; skipped for a cache that writes no file.
        """
        if not sys.platform.startswith("linux"):
            pytest.skip("needs fork and RLIMIT_FSIZE, as on Linux")
        cache = self.make_cache(tmp_path)
        before = self.value("res", tmp_path)
        assert cache.set("res", before) is True, "set() did not answer True"
        after = CachedResource("res", before.local_path + ".new")
        cache_dir: object = getattr(cache, "cache_dir", None)
        files = _entries(Path(cache_dir)) if isinstance(cache_dir, str) else None
        outcome = _with_no_room_to_write(partial(cache.set, "res", after))
        if outcome.returned == "True":
            pytest.skip("set() wrote no file (an in-memory cache?): nothing to judge")
        assert outcome.raised is None, (
            f"set() on a full disk raised {outcome.raised}: answer False (and log "
            "why) when the entry cannot be written"
        )
        assert outcome.returned == "False", (
            f"set() on a full disk returned {outcome.returned}, not False"
        )
        assert cache.get("res") == before, (
            "a set() the disk refused lost the previous entry: write the new one "
            "under a temporary name and rename it into place"
        )
        if files is not None and isinstance(cache_dir, str):
            left = sorted(_entries(Path(cache_dir)) - files)
            assert left == [], f"a set() the disk refused left {left} behind"

    def test_delete_removes_that_entry_only(self, tmp_path: Path) -> None:
        """``delete`` removes its uid's entry, no other, and ignores unknown uids."""
        cache = self.make_cache(tmp_path)
        for uid in ("a", "b", "*"):
            cache.set(uid, self.value(uid, tmp_path))
        cache.delete("*")
        cache.delete("absent")
        assert cache.get("*") is None, "delete() left the entry in place"
        assert cache.get("a") == self.value("a", tmp_path), (
            "delete('*') removed another entry: never glob or pattern-match uids"
        )

    def test_clear(self, tmp_path: Path) -> None:
        """``clear`` removes every entry."""
        cache = self.make_cache(tmp_path)
        for uid in ("a", "b"):
            cache.set(uid, self.value(uid, tmp_path))
        cache.clear()
        assert cache.get("a") is None and cache.get("b") is None, "clear() left entries"

    def test_delete_and_clear_empty_has_resource_and_in(self, tmp_path: Path) -> None:
        """After ``delete`` of a uid, and after ``clear``, ``has_resource`` and
        ``in`` are False for it, as ``get`` misses."""
        cache = self.make_cache(tmp_path)
        cache.set("res", self.value("res", tmp_path))
        cache.delete("res")
        left = _still_present(cache, "res")
        assert left == [], (
            f"after delete('res'), {' and '.join(left)} still answer True: "
            "answer them from the entries get() reads (present when get() "
            "finds the entry), never from a record of what was set"
        )
        for uid in ("a", "b"):
            cache.set(uid, self.value(uid, tmp_path))
        cache.clear()
        left = [
            f"{what} of {uid!r}"
            for uid in ("a", "b")
            for what in _still_present(cache, uid)
        ]
        assert left == [], (
            f"after clear(), {' and '.join(left)} still answer True: answer "
            "them from the entries get() reads, never from a record of what "
            "was set"
        )

    def test_expired_entry_is_a_miss(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An entry read after its timeout is a miss."""
        cache = self.make_cache(tmp_path)
        cache.set("res", self.value("res", tmp_path), timeout=60)
        later = time.time() + 120
        monkeypatch.setattr(time, "time", lambda: later)
        assert cache.get("res") is None, "get() served an entry past its timeout"
        assert not cache.has_resource("res"), "has_resource() of an expired entry"

    def test_expiry_time(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """``get_expiry_time(timeout)`` is now plus the timeout."""
        cache = self.make_cache(tmp_path)
        now = 1_700_000_000.0
        monkeypatch.setattr(time, "time", lambda: now)
        assert cache.get_expiry_time(30) == now + 30, (
            "get_expiry_time(30) is not time.time() + 30"
        )

    def test_corrupt_entry_is_a_miss(self, tmp_path: Path) -> None:
        """An entry that cannot be read back is a miss, never an exception."""
        cache = self.make_cache(tmp_path)
        cache.set("res", self.value("res", tmp_path))
        if not self.corrupt_entry(cache, "res"):
            pytest.skip("this cache has no entry to corrupt (see corrupt_entry)")
        try:
            found = cache.get("res")
        except Exception as exc:
            raise AssertionError(
                f"get() of a corrupt entry raised {exc!r}: treat it as a miss "
                "and remove it"
            ) from exc
        assert found is None, f"get() of a corrupt entry returned {found!r}"
        assert cache.set("res", self.value("res", tmp_path)), (
            "set() over a corrupt entry failed"
        )
        assert cache.get("res") == self.value("res", tmp_path)

    def test_any_uid_round_trips(self, tmp_path: Path) -> None:
        """Any uid, however hostile, is stored and read back under its own entry."""
        cache = self.make_cache(tmp_path)
        for uid in _HOSTILE_UIDS:
            try:
                stored = cache.set(uid, self.value(uid, tmp_path))
            except Exception as exc:
                raise AssertionError(
                    f"set({uid!r}) raised {exc!r}: map any uid to a safe file name"
                ) from exc
            assert stored, f"set({uid!r}) failed: map any uid to a safe file name"
        for uid in _HOSTILE_UIDS:
            found = cache.get(uid)
            assert found == self.value(uid, tmp_path), (
                f"get({uid!r}) returned {found!r}: two uids share an entry"
            )

    def test_uids_that_differ_in_case_name_different_files(
        self, tmp_path: Path
    ) -> None:
        """Uids that differ only in case get files whose names differ beyond case.

        On a case-insensitive filesystem (the defaults of macOS and Windows, a
        FAT drive) names that differ only in case are one file: ``Foo`` and
        ``foo`` would share an entry. Checked through ``uid_to_file``, for a
        cache that has it.
        """
        cache = self.make_cache(tmp_path)
        uid_to_file: object = getattr(cache, "uid_to_file", None)
        if not callable(uid_to_file):
            pytest.skip("this cache names no file per uid (it has no uid_to_file)")
        uids = ("Foo", "foo", "FOO", "Tool-1.2", "tool-1.2")
        names = [str(uid_to_file(uid)) for uid in uids]
        folded = {name.casefold() for name in names}
        assert len(folded) == len(uids), (
            f"uids {uids} are stored in {names}: names that differ only in case "
            "are one file on a case-insensitive filesystem; keep upper case out "
            "of file names (hash such uids, say)"
        )

    def test_uids_that_differ_in_case_are_different_entries(
        self, tmp_path: Path
    ) -> None:
        """``Foo``, ``foo`` and ``FOO`` are three entries: each ``get`` gives
        back the value set under its own uid, and deleting one keeps the others.

        A cache that folds case (a NOCASE database column, a file per uid on a
        case-insensitive filesystem) serves one uid's entry for another.
        """
        cache = self.make_cache(tmp_path)
        uids = ("Foo", "foo", "FOO")
        for uid in uids:
            cache.set(uid, self.value(uid, tmp_path))
        for uid in uids:
            found = cache.get(uid)
            assert found == self.value(uid, tmp_path), (
                f"get({uid!r}) returned {found!r} once {uids} were set: uids "
                "that differ only in case are different entries; never fold "
                "case (no NOCASE column, no upper case in file names on a "
                "case-insensitive filesystem: hash such uids)"
            )
        cache.delete("Foo")
        assert cache.get("foo") == self.value("foo", tmp_path), (
            "delete('Foo') removed the entry of 'foo': never fold the case of uids"
        )

    def test_a_delete_through_another_instance_is_seen(self, tmp_path: Path) -> None:
        """An entry deleted or cleared through a second cache on the same
        ``tmp_path`` (another process on the same directory) is gone for the
        first: ``get`` misses, ``has_resource`` and ``in`` are False.

        Only for caches whose instances share their entries (see
        :meth:`shares_entries`); skipped otherwise.
        """
        first = self.make_cache(tmp_path)
        if not self.shares_entries(first):
            pytest.skip("instances of this cache share no entries (see shares_entries)")
        second = self.make_cache(tmp_path)
        value = self.value("res", tmp_path)
        for how in ("delete('res')", "clear()"):
            first.set("res", value)
            found = second.get("res")
            assert found == value, (
                f"an entry set through one instance is {found!r} for another on "
                "the same directory: read the directory on each get(), keep no "
                "copy of entries per instance (or, for a cache whose instances "
                "share nothing, return False from shares_entries)"
            )
            assert first.get("res") == value, (
                "get() does not give back what set() stored"
            )
            if how == "clear()":
                second.clear()
            else:
                second.delete("res")
            got = first.get("res")
            left = [
                *(["get()"] if got is not None else []),
                *_still_present(first, "res"),
            ]
            assert left == [], (
                f"after {how} through another instance (another process), "
                f"{' and '.join(left)} still find the entry on the first: read "
                "the directory on each call, keep no copy of entries per instance"
            )

    def test_uids_stay_inside_the_cache_directory(self, tmp_path: Path) -> None:
        """A uid that reads as a relative path writes nothing outside ``cache_dir``."""
        cache = self.make_cache(tmp_path)
        cache_dir: object = getattr(cache, "cache_dir", None)
        if not isinstance(cache_dir, str):
            pytest.skip("this cache has no cache_dir")
        os.makedirs(cache_dir, exist_ok=True)
        before = _entries(tmp_path)
        for uid in ("../escape", "sub/../../climb"):
            try:
                cache.set(uid, self.value(uid, tmp_path))
            except Exception:  # noqa: BLE001 - round trips are another rule
                pass
        outside = sorted(
            path
            for path in _entries(tmp_path) - before
            if not is_within(str(tmp_path / path), cache_dir)
        )
        assert outside == [], (
            f"uids wrote {outside} outside the cache directory: never use a uid "
            "as a path"
        )
