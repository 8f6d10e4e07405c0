"""The error tree: ancestry, messages that carry values, pickling."""

from __future__ import annotations

import pickle

import pytest
from e3.error import E3Error

from e3_typed_store.errors import (
    CacheError,
    DeadlineExceededError,
    DestinationError,
    DownloadError,
    HTTPStatusError,
    IntegrityError,
    InvalidConfigurationError,
    InvalidQueryError,
    OfflineError,
    PluginError,
    StoreError,
)

ERRORS: list[tuple[StoreError, type[Exception], str, dict[str, object]]] = [
    (
        InvalidQueryError("sha", "xyz", "not hex"),
        ValueError,
        "'sha'='xyz': not hex",
        {"key": "sha", "value": "xyz"},
    ),
    (
        InvalidQueryError.missing("url"),
        ValueError,
        "'url'=None: required key is missing",
        {"key": "url"},
    ),
    (
        InvalidConfigurationError("retries", -1, "must be >= 0"),
        ValueError,
        "'retries'=-1",
        {"value": -1},
    ),
    (
        IntegrityError("http://h/f", "aa", "bb"),
        StoreError,
        "expecting aa got bb",
        {"url": "http://h/f", "expected": "aa", "actual": "bb"},
    ),
    (
        DownloadError("http://h/f", "connection refused"),
        StoreError,
        "http://h/f: connection refused",
        {"url": "http://h/f"},
    ),
    (
        HTTPStatusError("http://h/f", 404),
        DownloadError,
        "HTTP status 404",
        {"status": 404, "url": "http://h/f"},
    ),
    (
        DeadlineExceededError("http://h/f", 2.5),
        TimeoutError,
        "2.5 s deadline",
        {"deadline": 2.5},
    ),
    (
        DestinationError("http://h/f", "/d", "cannot write into /d: disk full"),
        DownloadError,
        "http://h/f: cannot write into /d: disk full",
        {"url": "http://h/f", "dest": "/d"},
    ),
    (OfflineError("abc"), StoreError, "abc is not in the cache", {"uid": "abc"}),
    (
        OfflineError("abc", "its cached copy cannot be used now"),
        StoreError,
        "offline mode: abc: its cached copy cannot be used now",
        {"uid": "abc", "reason": "its cached copy cannot be used now"},
    ),
    (
        PluginError("e3_typed_store.store", "nope", "not installed"),
        LookupError,
        "'nope'",
        {"name": "nope"},
    ),
    (
        CacheError("abc", "disk full"),
        StoreError,
        "'abc': disk full",
        {"reason": "disk full"},
    ),
]


@pytest.mark.parametrize(
    ("error", "builtin", "text", "attrs"), ERRORS, ids=lambda e: type(e).__name__
)
def test_error(
    error: StoreError, builtin: type[Exception], text: str, attrs: dict[str, object]
) -> None:
    assert isinstance(error, builtin)
    assert text in str(error)
    for name, value in attrs.items():
        assert getattr(error, name) == value
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    for name, value in attrs.items():
        assert getattr(copy, name) == value


def test_root_is_an_e3_error() -> None:
    assert issubclass(StoreError, E3Error)


def test_plain_store_error_pickles() -> None:
    copy = pickle.loads(pickle.dumps(StoreError("boom")))
    assert str(copy) == "boom"


def test_store_error_is_built_as_e3_cores() -> None:
    """A driver ported from e3.store passes an origin, or several messages."""
    import e3.store.backends.base as e3_base

    cases: list[tuple[str | list[str], str | None]] = [
        ("boom", "my_driver"),
        (["first", "boom"], None),
        (["first", "boom"], "x"),
    ]
    for message, origin in cases:
        ours = StoreError(message, origin)
        theirs = e3_base.StoreError(message, origin)
        assert str(ours) == str(theirs)
        assert ours.args == theirs.args and ours.origin == theirs.origin
        copy = pickle.loads(pickle.dumps(ours))
        assert str(copy) == str(ours) and copy.origin == ours.origin
    assert str(StoreError("boom", "my_driver")) == "my_driver: boom\n"
