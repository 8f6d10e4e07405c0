"""Sizes and ages as the command line reads them."""

from __future__ import annotations

import pytest

from e3_typed_store._cache_admin import parse_age, parse_size


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


@pytest.mark.parametrize("text", ["", "lots", "-1", "1x", "1.2.3", "G"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize("text", ["", "soon", "-5d", "3y", "d"])
def test_bad_ages(text: str) -> None:
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)
