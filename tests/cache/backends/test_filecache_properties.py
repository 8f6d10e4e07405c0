"""FileCache properties: whatever the entry files hold, whatever the uid."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from e3_typed_store.backends.base import CachedResource
from e3_typed_store.cache.backends.filecache import FileCache, FileCacheEntry

# File I/O under runtime checks is slow now and then: no per-example deadline.
PROPERTY = settings(deadline=None, max_examples=200)

UID = "u"
VALUE = CachedResource(UID, "/p")

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)
KEYS = ["format", "version", "uid", "expiry", "value"]
# Field values that are nearly right: the kinds of mistakes a bad writer makes.
NEAR_VALUES = (
    st.sampled_from(
        ["e3-typed-store.cache-entry", 1, True, 1.0, 2, UID, "v", 1e300, -1.0]
    )
    | st.fixed_dictionaries({"uid": JSON_VALUES, "local_path": JSON_VALUES})
    | JSON_VALUES
)


def valid_document(uid: str, local_path: str) -> dict[str, object]:
    return {
        "format": "e3-typed-store.cache-entry",
        "version": 1,
        "uid": UID,
        "expiry": 1e300,
        "value": {"uid": uid, "local_path": local_path},
    }


def altered(
    document: dict[str, object], replaced: dict[str, object], removed: set[str]
) -> dict[str, object]:
    """Return *document* with fields *replaced* (or added) and *removed*."""
    merged = {**document, **replaced}
    return {key: value for key, value in merged.items() if key not in removed}


# A valid entry (for any value), with a few fields replaced, added or removed.
NEAR_ENTRIES = st.builds(
    altered,
    st.builds(valid_document, st.text(), st.text()),
    st.dictionaries(st.sampled_from([*KEYS, "extra"]), NEAR_VALUES, max_size=2),
    st.sets(st.sampled_from(KEYS), max_size=1),
)


# Expiries as a writer may give them: far ahead, past, beyond a float, whole.
EXPIRIES = (
    st.floats(min_value=1e10, allow_infinity=True)
    | st.floats(allow_nan=False)
    | st.integers()
    | st.sampled_from([1e300, 1e10, -0.0, 4e9 + 0.5])
)
# Whole entries (any strings, any expiry), and entries a field or two off.
ENTRIES = (
    st.builds(
        altered,
        st.builds(valid_document, st.text(), st.text()),
        st.fixed_dictionaries({"expiry": EXPIRIES}),
        st.just(set[str]()),
    )
    | NEAR_ENTRIES
)


def layouts(document: dict[str, object]) -> list[bytes]:
    """*document* as set() lays an entry out, with raw non-ASCII characters,
    and indented: the first two are read without the JSON decoder when their
    strings need no escape, the last never is."""
    return [
        (json.dumps(document) + "\n").encode(),
        (json.dumps(document, ensure_ascii=False) + "\n").encode(),
        json.dumps(document, indent=1).encode(),
    ]


@contextmanager
def fresh_cache() -> Generator[tuple[Path, FileCache], None, None]:
    """A new cache per example (pytest's tmp_path is one per test)."""
    with tempfile.TemporaryDirectory() as root:
        yield Path(root), FileCache({"cache_dir": os.path.join(root, "cache")})


def plant(cache: FileCache, content: bytes) -> Path:
    path = Path(cache.uid_to_file(UID))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def assert_default_or_valid(cache: FileCache, path: Path) -> None:
    found = cache.get(UID)
    if found is None:
        assert not path.exists()  # a miss removed what it could not read
    else:
        assert type(found) is CachedResource
        assert path.exists()
    assert cache.get(UID, VALUE) in (VALUE, found)


@PROPERTY
@given(st.binary(max_size=512))
@example(b"")
@example(b"\x80\x04")
@example(b"[" * 100_000)
def test_any_bytes_read_as_default_or_value(content: bytes) -> None:
    with fresh_cache() as (_, cache):
        assert_default_or_valid(cache, plant(cache, content))


@PROPERTY
@given(JSON_VALUES)
def test_any_json_reads_as_default_or_value(document: object) -> None:
    with fresh_cache() as (_, cache):
        path = plant(cache, json.dumps(document).encode())
        assert cache.get(UID) is None  # no arbitrary JSON value is an entry
        assert not path.exists()


@PROPERTY
@given(NEAR_ENTRIES)
def test_near_entries_read_as_default_or_value(document: dict[str, object]) -> None:
    with fresh_cache() as (_, cache):
        assert_default_or_valid(cache, plant(cache, json.dumps(document).encode()))


@PROPERTY
@given(ENTRIES)
@example(valid_document("u", "/p"))
@example(altered(valid_document("\u00e9", '/caf\u00e9 "x"'), {"expiry": 4e9}, set()))
@example(altered(valid_document("u", "/p"), {"expiry": 1e999}, set()))
@example(altered(valid_document("u", "/p"), {"expiry": 10**400}, set()))
@example(altered(valid_document("u", "/p\x7f\n"), {"expiry": 5e9}, set()))
def test_an_entry_reads_the_same_in_any_layout(document: dict[str, object]) -> None:
    read: list[tuple[CachedResource | None, list[FileCacheEntry]]] = []
    for content in layouts(document):
        with fresh_cache() as (_, cache):
            plant(cache, content)
            found = cache.get(UID)
            plant(cache, content)
            read.append((found, list(cache.iter_entries())))
    assert read[0] == read[1] == read[2]
    found, listed = read[0]
    if found is not None:  # a hit lists the entry as written
        assert listed == [FileCacheEntry(UID, found, float(str(document["expiry"])))]


def names_a_file(path: str) -> bool:
    """Whether an os call can take *path*: no NUL, and encodable."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return False
    return "\0" not in path


@PROPERTY
@given(st.text(), st.text())
@example("../x", "/p")
@example("../../../../etc/passwd", "/p")
@example("/abs/path", "/p")
@example("a\x00b", "/p")
@example("a\x00b", "\x00")  # a path no os call takes: refused
@example("u", "/p\ud800")  # a surrogate no file name has: refused
@example("x" * 10_000, "/p")
@example("", "")
@example(".", ".")
@example("..", "..")
@example("\udcff", "\udcfe")  # lone surrogates, as surrogateescape makes
def test_any_uid_round_trips_inside_the_cache(uid: str, local_path: str) -> None:
    with fresh_cache() as (root, cache):
        value = CachedResource(uid, local_path)
        if not names_a_file(local_path):
            assert not cache.set(uid, value)
            assert cache.get(uid) is None
            assert not os.path.exists(cache.entries_dir)
            return
        assert cache.set(uid, value)
        assert cache.get(uid) == value
        assert [entry.uid for entry in cache.iter_entries()] == [uid]
        created = [
            Path(directory, name)
            for directory, _, names in os.walk(root)
            for name in names
        ]
        assert created == [Path(cache.uid_to_file(uid))]
        assert created[0].parent == Path(cache.entries_dir)
        assert not created[0].name.endswith(".cache")
        cache.delete(uid)
        assert cache.get(uid) is None


@PROPERTY
@given(st.lists(st.text(max_size=8), min_size=2, max_size=6, unique=True))
def test_distinct_uids_keep_distinct_entries(uids: list[str]) -> None:
    with fresh_cache() as (_, cache):
        for index, uid in enumerate(uids):
            assert cache.set(uid, CachedResource(uid, str(index)))
        for index, uid in enumerate(uids):
            assert cache.get(uid) == CachedResource(uid, str(index))
        assert sorted(entry.uid for entry in cache.iter_entries()) == sorted(uids)
        cache.clear()
        assert os.listdir(cache.entries_dir) == []
