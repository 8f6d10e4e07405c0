"""Sizes and ages as the command line reads them; what clearing removes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e3_typed_store._cache_admin import clear_cache, parse_age, parse_size
from e3_typed_store._content import ContentStore
from e3_typed_store._types import CachedResource
from e3_typed_store.cache.backends.filecache import FileCache


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("1k", 1024),
        ("500M", 500 << 20),
        ("2G", 2 << 30),
        ("1.5GiB", 3 << 29),
        ("10 MB", 10 << 20),
        ("1t", 1 << 40),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3600", 3600.0),
        ("90m", 5400.0),
        ("12h", 43200.0),
        ("30d", 2592000.0),
        ("2w", 1209600.0),
        ("1.5s", 1.5),
    ],
)
def test_ages(text: str, expected: float) -> None:
    assert parse_age(text) == expected


@pytest.mark.parametrize(
    "text", ["", "lots", "-1", "1x", "1.2.3", "G", "9" * 400, "9" * 300 + "T"]
)
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["", "soon", "-5d", "3y", "d"])
def test_bad_ages(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_clearing_removes_every_kept_copy_and_only_the_packages_files(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "cache"
    cache = FileCache({"cache_dir": str(cache_dir)})
    content = ContentStore(str(cache_dir))
    download = tmp_path / "download.bin"
    download.write_bytes(b"payload")
    for uid in ("listed", "orphan"):
        kept = content.keep(uid, str(download)).path
        assert cache.set(uid, CachedResource(uid, kept))
    cache.delete("orphan")  # its copy stays, named by no entry
    # An entry and a copy as version 0.1.0 named them: upper case kept.
    old = cache_dir / "resources" / "Tool" / "payload" / "tool.bin"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    entry = {"uid": "Tool", "local_path": str(old)}
    (cache_dir / "entries" / "Tool.json").write_text(
        json.dumps(
            {
                "format": "e3-typed-store.cache-entry",
                "version": 1,
                "uid": "Tool",
                "expiry": 4e9,
                "value": entry,
            }
        ),
        encoding="utf-8",
    )
    # Not the package's: left alone.
    (cache_dir / "resources" / "README").write_text("mine", encoding="utf-8")
    (cache_dir / "resources" / ".hidden").mkdir()
    (cache_dir / "e3-core.cache").write_bytes(b"pickle")

    assert clear_cache(cache) == 1  # the one valid entry
    assert sorted(p.name for p in (cache_dir / "resources").iterdir()) == [
        ".hidden",
        "README",
    ]
    assert list((cache_dir / "entries").iterdir()) == []
    assert (cache_dir / "e3-core.cache").read_bytes() == b"pickle"
    assert download.read_bytes() == b"payload"
