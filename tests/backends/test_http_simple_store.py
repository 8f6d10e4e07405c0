"""HTTPSimpleStore against a real loopback server: queries, configuration, e3 parity.

The hostile servers (truncation, stalls, retries, resumption) are in
test_http_hostile.py.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e3_typed_store import load_store
from e3_typed_store._types import override
from e3_typed_store.backends.base import (
    ResourceInfo,
    ResourceInfoProtocol,
    Store,
    StoreProtocol,
)
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleQuery,
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
    HTTPSimpleStoreResourceInfo,
    HTTPSimpleStoreSettings,
    mirror_url,
)
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.errors import (
    HTTPStatusError,
    IntegrityError,
    InvalidConfigurationError,
    InvalidQueryError,
    StoreError,
)
from tests.httpserver import Exchange, LoopbackServer, closed_port

CONTENT = b"resource content\n" * 4096
SHA1 = hashlib.sha1(CONTENT).hexdigest()
SHA256 = hashlib.sha256(CONTENT).hexdigest()
SHA512 = hashlib.sha512(CONTENT).hexdigest()

# Small waits so that the suite stays fast.
FAST: HTTPSimpleStoreConfiguration = {
    "retries": 2,
    "backoff_base": 0.01,
    "backoff_max": 0.05,
    "deadline": 10.0,
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
}


def by_name() -> StoreProtocol[ResourceInfoProtocol, Mapping[str, object]]:
    """The store as code loading it by name has it: queries of any shape go in."""
    return load_store("http-simple-store", {}, None)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def serve(
    content: bytes, headers: dict[str, str] | None = None
) -> Callable[[Exchange], None]:
    def handler(exchange: Exchange) -> None:
        exchange.respond(200, content, headers)

    return handler


def dest_files(dest: Path) -> list[str]:
    return sorted(os.listdir(dest)) if dest.exists() else []


# -- queries ---------------------------------------------------------------


def query_for(url: str, key: str, digest: str) -> HTTPSimpleQuery:
    """The query giving *digest* under the digest key *key*."""
    if key == "sha":
        return {"url": url, "sha": digest}
    if key == "sha256":
        return {"url": url, "sha256": digest}
    return {"url": url, "sha512": digest}


@pytest.mark.parametrize(
    ("key", "digest", "algorithm"),
    [
        ("sha", SHA1, "sha1"),
        ("sha256", SHA256, "sha256"),
        ("sha512", SHA512, "sha512"),
        ("sha", SHA1.upper(), "sha1"),
        ("sha256", SHA256.upper(), "sha256"),
        ("sha512", SHA512.upper(), "sha512"),
    ],
)
def test_download_each_algorithm_in_any_case(
    server: LoopbackServer, tmp_path: Path, key: str, digest: str, algorithm: str
) -> None:
    server.route("/pkg/a.tgz", serve(CONTENT))
    store = HTTPSimpleStore(FAST, None)
    info = store.get_resource_metadata(query_for(server.url("/pkg/a.tgz"), key, digest))
    assert info.algorithm == algorithm
    assert info.uid == digest.lower() == info.digest
    path = store.download_resource_content(info, str(tmp_path))
    assert path == str(tmp_path / "a.tgz")
    assert Path(path).read_bytes() == CONTENT
    assert dest_files(tmp_path) == ["a.tgz"]
    assert info.verify(path)


def test_e3_compatible_construction_query_and_uid(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/x.bin", serve(CONTENT))
    store = HTTPSimpleStore({}, None)
    assert store.settings == HTTPSimpleStoreSettings()
    query: HTTPSimpleQuery = {"url": server.url("/x.bin"), "sha": SHA1}
    info = store.get_resource_metadata(query)
    assert isinstance(info, ResourceInfo)
    assert info.uid == SHA1 == info.sha
    path = store.download_resource(info, str(tmp_path / "dest"))
    assert path is not None
    assert Path(path).read_bytes() == CONTENT


def test_uid_is_e3_cores(server: LoopbackServer) -> None:
    from e3.store.backends.http_simple_store import (
        HTTPSimpleStoreResourceInfo as E3Info,
    )

    url = server.url("/x")
    e3_info = E3Info(url, SHA1)  # what e3-core's get_resource_metadata returns
    ours = HTTPSimpleStore({}, None).get_resource_metadata({"url": url, "sha": SHA1})
    assert ours.uid == e3_info.uid
    assert ours.url == e3_info.url


def test_store_with_none_configuration_and_a_cache(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/x.bin", serve(CONTENT))
    store = HTTPSimpleStore(None, MemoryCache())
    info = store.get_resource_metadata({"url": server.url("/x.bin"), "sha256": SHA256})
    first = store.download_resource(info, str(tmp_path / "a"))
    second = store.download_resource(info, str(tmp_path / "b"))
    assert first is not None and second is not None
    assert len(server.requests("/x.bin")) == 1
    assert Path(second).read_bytes() == CONTENT


def test_resource_info_is_a_value(tmp_path: Path) -> None:
    info = HTTPSimpleStoreResourceInfo("https://h/x", SHA256.upper(), "sha256")
    same = HTTPSimpleStoreResourceInfo("https://h/x", SHA256, "sha256")
    assert info == same and hash(info) == hash(same)
    assert info != HTTPSimpleStoreResourceInfo("https://h/y", SHA256, "sha256")
    assert pickle.loads(pickle.dumps(info)) == info
    assert "sha256" in repr(info)
    (tmp_path / "f").write_bytes(CONTENT)
    assert info.verify(str(tmp_path / "f"))


def test_verify_logs_e3s_critical_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"something else")
    info = HTTPSimpleStoreResourceInfo("http://h/f", SHA1)
    with caplog.at_level(logging.CRITICAL, logger="e3.store.httpsimplestore"):
        assert not info.verify(str(path))
    actual = hashlib.sha1(b"something else").hexdigest()
    [record] = [r for r in caplog.records if r.name == "e3.store.httpsimplestore"]
    assert record.levelno == logging.CRITICAL
    assert record.getMessage() == (
        f"wrong sha for resource {path} expecting {SHA1} got {actual}"
    )


GOOD_URL = "http://127.0.0.1/x"


@pytest.mark.parametrize(
    ("query", "key", "value"),
    [
        ({"sha": SHA1}, "url", None),
        ({"url": GOOD_URL}, "sha", None),
        ({"url": 3, "sha": SHA1}, "url", 3),
        ({"url": GOOD_URL, "sha": b"ab"}, "sha", b"ab"),
        ({"url": GOOD_URL, "sha": "z" * 40}, "sha", "z" * 40),
        ({"url": GOOD_URL, "sha": SHA1[:-1]}, "sha", SHA1[:-1]),
        ({"url": GOOD_URL, "sha": SHA256}, "sha", SHA256),
        ({"url": GOOD_URL, "sha256": SHA1}, "sha256", SHA1),
        ({"url": GOOD_URL, "sha512": SHA256}, "sha512", SHA256),
        ({"url": GOOD_URL, "sha": SHA1, "sha256": SHA256}, "sha256", SHA256),
        ({"url": GOOD_URL, "sha": SHA1, "sha265": SHA256}, "sha265", SHA256),
        ({"url": "ftp://127.0.0.1/x", "sha": SHA1}, "url", "ftp://127.0.0.1/x"),
        ({"url": "file:///etc/passwd", "sha": SHA1}, "url", "file:///etc/passwd"),
        ({"url": "http:///x", "sha": SHA1}, "url", "http:///x"),
        ({"url": "/just/a/path", "sha": SHA1}, "url", "/just/a/path"),
        ({"url": "http://h:99999/x", "sha": SHA1}, "url", "http://h:99999/x"),
        # urllib3 would connect to port 80 instead.
        ({"url": "http://h:0/x", "sha": SHA1}, "url", "http://h:0/x"),
        ({"url": "http://h/x\r\nX: y", "sha": SHA1}, "url", "http://h/x\r\nX: y"),
        ({"url": "", "sha": SHA1}, "url", ""),
        # Basic authentication sends credentials in Latin-1: these cannot be
        # (and the error does not keep them).
        ({"url": "http://u:p\u4e2d@h/x", "sha": SHA1}, "url", "http://u:***@h/x"),
        ({"url": "http://%E4%B8%AD@h/x", "sha": SHA1}, "url", "http://***@h/x"),
        # Hosts the HTTP client would refuse only when asked to connect: a
        # byte of a command line that is no UTF-8, names IDNA does not allow,
        # a leading dot.
        ({"url": "http://\udcff/x", "sha": SHA1}, "url", "http://\udcff/x"),
        ({"url": "http://\u2603.net/x", "sha": SHA1}, "url", "http://\u2603.net/x"),
        ({"url": "http://b\u00fc..de/x", "sha": SHA1}, "url", "http://b\u00fc..de/x"),
        ({"url": "http://.h/x", "sha": SHA1}, "url", "http://.h/x"),
        # Refused by urllib3's parsing, which maps no character: a feminine
        # ordinal, fullwidth letters, an ideographic full stop.
        (
            {"url": "http://\u00aa.example/x", "sha": SHA1},
            "url",
            "http://\u00aa.example/x",
        ),
        (
            {"url": "http://\uff41.example/x", "sha": SHA1},
            "url",
            "http://\uff41.example/x",
        ),
        (
            {"url": "http://\u4f8b\u3002jp/x", "sha": SHA1},
            "url",
            "http://\u4f8b\u3002jp/x",
        ),
    ],
)
def test_bad_query_names_key_and_value(
    query: dict[str, object], key: str, value: object
) -> None:
    with pytest.raises(InvalidQueryError) as raised:
        by_name().get_resource_metadata(query)
    assert raised.value.key == key
    assert raised.value.value == value
    assert repr(key) in str(raised.value)


def test_bad_resource_info_arguments() -> None:
    with pytest.raises(InvalidQueryError, match="'url'"):
        HTTPSimpleStoreResourceInfo("ftp://h/x", SHA1)
    with pytest.raises(InvalidQueryError, match="'sha256'"):
        HTTPSimpleStoreResourceInfo("http://h/x", SHA1, "sha256")


_QUERY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=8),
    st.text(max_size=20),
    st.sampled_from([SHA1, SHA1.upper(), SHA256, SHA512, GOOD_URL, "https://h:1/"]),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=39, max_size=129),
    st.builds("http://{}/{}".format, st.text(max_size=8), st.text(max_size=8)),
    st.lists(st.text(max_size=4), max_size=3),
)
_QUERY_KEYS = st.one_of(
    st.sampled_from(["url", "sha", "sha256", "sha512"]), st.text(max_size=8)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_QUERY_KEYS, _QUERY_VALUES, max_size=4))
def test_any_query_gives_metadata_or_invalid_query_error(
    query: dict[str, object],
) -> None:
    store = by_name()
    try:
        info = store.get_resource_metadata(query)
    except InvalidQueryError as exc:
        assert exc.key in {str(k) for k in query} | {"url", "sha"}
        return
    assert isinstance(info, HTTPSimpleStoreResourceInfo)
    assert info.uid == info.digest == info.digest.lower()


# -- configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("configuration", "key", "value"),
    [
        ({"deadline": 0}, "deadline", 0),
        ({"deadline": -1.0}, "deadline", -1.0),
        ({"deadline": float("inf")}, "deadline", float("inf")),
        ({"connect_timeout": "10"}, "connect_timeout", "10"),
        ({"read_timeout": True}, "read_timeout", True),
        ({"retries": -1}, "retries", -1),
        ({"retries": 1.5}, "retries", 1.5),
        ({"retries": 1000}, "retries", 1000),
        ({"backoff_base": -0.1}, "backoff_base", -0.1),
        ({"backoff_max": None}, "backoff_max", None),
        ({"progress": "yes"}, "progress", "yes"),
        ({"fallback_to_origin": 0}, "fallback_to_origin", 0),
        ({"chunk_size": 0}, "chunk_size", 0),
        ({"chunk_size": 1 << 40}, "chunk_size", 1 << 40),
        ({"mirrors": "http://m"}, "mirrors", "http://m"),
        ({"mirrors": ["ftp://m/x"]}, "mirrors", "ftp://m/x"),
        ({"mirrors": ["http://m/?q=1"]}, "mirrors", "http://m/?q=1"),
        ({"mirrors": ["http:///x"]}, "mirrors", "http:///x"),
        ({"mirrors": [42]}, "mirrors", 42),
        ({"mirrors": ["http://[::1/c/"]}, "mirrors", "http://[::1/c/"),
        ({"mirrors": ["http://m:99999/c/"]}, "mirrors", "http://m:99999/c/"),
        ({"mirrors": ["http://m:0/c/"]}, "mirrors", "http://m:0/c/"),
        ({"mirrors": ["http://m /c/"]}, "mirrors", "http://m /c/"),
        ({"mirrors": ["http://m/c/\n"]}, "mirrors", "http://m/c/\n"),
        # A host no request can be made to, as for a query's URL.
        ({"mirrors": ["http://\u2603.net/c"]}, "mirrors", "http://\u2603.net/c"),
        ({"mirrors": ["http://.m/c"]}, "mirrors", "http://.m/c"),
        ({"mirrors": ["http://\udcff/c"]}, "mirrors", "http://\udcff/c"),
        ({"fallback_to_origin": False}, "fallback_to_origin", False),
        ({"timeout": 3}, "timeout", 3),
    ],
)
def test_bad_configuration_names_key_and_value(
    configuration: dict[str, object], key: str, value: object
) -> None:
    with pytest.raises(InvalidConfigurationError) as raised:
        load_store("http-simple-store", configuration, None)
    assert raised.value.key == key
    assert raised.value.value == value or value != value  # nan-safe
    assert repr(key) in str(raised.value)


@pytest.mark.parametrize(
    "mirrors",
    [
        ["http://m/c/"],
        ("http://m/c/",),
        collections.deque(["http://m/c/"]),
        collections.UserList(["http://m/c/"]),
    ],
    ids=["list", "tuple", "deque", "UserList"],
)
def test_mirrors_may_be_any_sequence(mirrors: Sequence[str]) -> None:
    # What the configuration's type, Sequence[str], lets a caller pass.
    store = HTTPSimpleStore({"mirrors": mirrors}, None)
    assert store.settings.mirrors == ("http://m/c/",)


def test_configuration_is_validated_into_frozen_settings() -> None:
    store = HTTPSimpleStore(
        {
            "deadline": 5,
            "retries": 0,
            "mirrors": ["http://m.example/c/"],
            "progress": False,
        },
        None,
    )
    assert store.settings.deadline == 5.0
    assert store.settings.mirrors == ("http://m.example/c/",)
    field = "retries"
    with pytest.raises(FrozenInstanceError):
        setattr(store.settings, field, 3)
    with pytest.raises(InvalidConfigurationError, match="'retries'"):
        HTTPSimpleStoreSettings(retries=-2)


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        ({"retries": 1}, {"retries": True}),
        ({"progress": True}, {"progress": 1}),
        ({"chunk_size": 4096}, {"chunk_size": 4096.0}),
        ({"deadline": 30, "progress": False}, {"deadline": "30", "progress": False}),
    ],
)
def test_a_configuration_equal_to_a_valid_one_is_still_checked(
    accepted: dict[str, object], refused: dict[str, object]
) -> None:
    # Settings made once serve equal configurations again: True == 1 and
    # 4096 == 4096.0 in Python, but only one of each pair is valid.
    made = HTTPSimpleStoreSettings.from_configuration
    assert made(dict(accepted)) == made(accepted)
    (key,) = [k for k in refused if refused[k] is not accepted[k]]
    with pytest.raises(InvalidConfigurationError) as raised:
        made(refused)
    assert raised.value.key == key


def test_equal_configurations_give_equal_settings_mirrors_included() -> None:
    configuration: dict[str, object] = {
        "mirrors": ["http://m.example/c/"],
        "deadline": 5,
        "progress": False,
    }
    made = HTTPSimpleStoreSettings.from_configuration
    first, second = made(configuration), made(dict(configuration))
    assert first == second
    assert (second.mirrors, second.deadline) == (("http://m.example/c/",), 5.0)
    assert made({**configuration, "deadline": 6}).deadline == 6.0


def test_a_bad_url_is_refused_every_time_a_good_one_accepted_every_time() -> None:
    store = HTTPSimpleStore({}, None)
    for _ in range(2):
        with pytest.raises(InvalidQueryError, match="no host"):
            store.get_resource_metadata({"url": "http:///x", "sha": SHA1})
        info = store.get_resource_metadata({"url": "http://h.example/x", "sha": SHA1})
        assert info.url == "http://h.example/x"


@pytest.mark.parametrize(
    "host", ["a..example", "a" * 64 + ".example", "example.com..", "*.example"]
)
def test_a_host_name_no_request_can_be_made_to_is_refused(host: str) -> None:
    # An empty label, one of over 63 bytes: the resolver refuses them, and
    # the download would fail with retries, as a connection that failed.
    store = HTTPSimpleStore({}, None)
    with pytest.raises(InvalidQueryError, match="not a valid name") as raised:
        store.get_resource_metadata({"url": f"http://{host}/x", "sha": SHA1})
    assert raised.value.key == "url"


@pytest.mark.parametrize(
    "host", ["example.com.", "a" * 63 + ".example", "127.0.0.1", "[::1]", "localhost"]
)
def test_a_host_name_of_valid_labels_is_accepted(host: str) -> None:
    url = f"http://{host}/x"
    info = HTTPSimpleStore({}, None).get_resource_metadata({"url": url, "sha": SHA1})
    assert info.url == url


def test_an_internationalized_host_is_accepted() -> None:
    info = HTTPSimpleStore({}, None).get_resource_metadata(
        {"url": "http://b\u00fccher.example/x", "sha": SHA1}
    )
    assert info.url == "http://b\u00fccher.example/x"


def test_a_string_subclass_equal_to_a_valid_url_is_checked_itself() -> None:
    class Sly(str):
        """A string that claims to equal any other, and hashes as the good URL."""

        __slots__ = ()

        @override
        def __eq__(self, other: object) -> bool:
            return True

        @override
        def __hash__(self) -> int:
            return hash("http://h.example/x")

    store = HTTPSimpleStore({}, None)
    store.get_resource_metadata({"url": "http://h.example/x", "sha": SHA1})
    with pytest.raises(InvalidQueryError, match="white space"):
        store.get_resource_metadata({"url": Sly("http://h.example/ x"), "sha": SHA1})


def test_mirror_url_replaces_scheme_host_and_port() -> None:
    url = "http://user:pw@origin.example:8080/a/b.tgz?v=1#frag"
    assert mirror_url("https://m.example", url) == "https://m.example/a/b.tgz?v=1"
    assert mirror_url("https://m.example/c/", url) == "https://m.example/c/a/b.tgz?v=1"
    assert mirror_url("http://127.0.0.1:9/c", "http://o/x") == "http://127.0.0.1:9/c/x"


# -- downloads ---------------------------------------------------------------


def test_mismatched_digest_leaves_nothing_and_logs_e3s_line(
    server: LoopbackServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.route("/x.tgz", serve(b"not the content"))
    store = HTTPSimpleStore(FAST, None)
    info = store.get_resource_metadata({"url": server.url("/x.tgz"), "sha": SHA1})
    with (
        caplog.at_level(logging.CRITICAL, logger="e3.store.httpsimplestore"),
        pytest.raises(IntegrityError) as raised,
    ):
        store.download_resource_content(info, str(tmp_path))
    actual = hashlib.sha1(b"not the content").hexdigest()
    assert (raised.value.url, raised.value.expected, raised.value.actual) == (
        server.url("/x.tgz"),
        SHA1,
        actual,
    )
    assert dest_files(tmp_path) == []
    assert len(server.requests("/x.tgz")) == 1  # an integrity error is not retried
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical == [
        f"wrong sha for resource {server.url('/x.tgz')} expecting {SHA1} got {actual}"
    ]


def test_download_resource_returns_none_and_fetch_raises(
    server: LoopbackServer, tmp_path: Path
) -> None:
    store = HTTPSimpleStore(FAST, MemoryCache())
    info = store.get_resource_metadata({"url": server.url("/missing"), "sha": SHA1})
    assert store.download_resource(info, str(tmp_path)) is None
    with pytest.raises(HTTPStatusError) as raised:
        store.fetch_resource(info, str(tmp_path))
    assert raised.value.status == 404
    assert dest_files(tmp_path) == []


HOSTILE_NAMES = [
    ('attachment; filename="../x"', "x"),
    ('attachment; filename="/etc/passwd"', "passwd"),
    ('attachment; filename="*"', "url-name.bin"),
    ('attachment; filename=".."', "url-name.bin"),
    ('attachment; filename=""', "url-name.bin"),
    ('attachment; filename="C:\\\\x"', "x"),
    ('attachment; filename="a/../../b"', "b"),
    ('attachment; filename="a\x00b"', "url-name.bin"),
    ("attachment; filename*=UTF-8''..%2F..%2Fx", "x"),
    ("attachment; filename*=UTF-8''%00", "url-name.bin"),
    ("attachment; filename*=UTF-8''..", "url-name.bin"),
    ("attachment; filename*=UTF-8''caf%C3%A9.txt; filename=\"plain.txt\"", "café.txt"),
    ("attachment; filename=\"plain.txt\"; filename*=UTF-8''%2E%2E", "plain.txt"),
    ("attachment; filename*=UTF-8''%FF%FE", "url-name.bin"),
    ("attachment; filename=" + "a" * 300, "url-name.bin"),
    ('attachment; filename="nul.txt"', "url-name.bin"),
    ('attachment; filename="COM\xb9.txt"', "url-name.bin"),  # COM¹: reserved too
    ("attachment; filename*=UTF-8''lpt%C2%B3", "url-name.bin"),  # LPT³
    ("attachment; filename*=UTF-8''x%E2%80%AEgnp.exe", "url-name.bin"),
    ('attachment; filename="caf\xe9"', "caf\xe9"),
    ('attachment; filename="name."', "url-name.bin"),
    ('attachment; filename=" lead"', "url-name.bin"),
    ("attachment", "url-name.bin"),
    ("inline; filename=report.pdf", "report.pdf"),
]


@pytest.mark.parametrize(("disposition", "expected"), HOSTILE_NAMES)
def test_hostile_content_disposition_lands_inside_dest(
    server: LoopbackServer, tmp_path: Path, disposition: str, expected: str
) -> None:
    # The raw header goes over the wire as latin-1, NUL included.
    server.route("/url-name.bin", serve(CONTENT, {"Content-Disposition": disposition}))
    outside = tmp_path / "outside"
    dest = outside / "dest"
    dest.mkdir(parents=True)
    store = HTTPSimpleStore(FAST, None)
    info = store.get_resource_metadata(
        {"url": server.url("/url-name.bin"), "sha": SHA1}
    )
    path = store.download_resource_content(info, str(dest))
    assert os.path.dirname(path) == str(dest)
    assert os.path.basename(path) == expected
    assert dest_files(dest) == [expected]
    assert sorted(os.listdir(outside)) == ["dest"]
    assert sorted(os.listdir(tmp_path)) == ["outside"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/dir/..%2F..%2Fescape.bin", "escape.bin"),
        ("/dir/%2E%2E", SHA1),
        ("/dir/", SHA1),
        ("/dir/a%2A", SHA1),
        ("/dir/%FF", SHA1),
        ("/dir/%5C..%5Cwin.bin", "win.bin"),
    ],
)
def test_url_name_is_reduced_or_replaced_by_uid(
    server: LoopbackServer, tmp_path: Path, path: str, expected: str
) -> None:
    server.route_all(serve(CONTENT))  # the client may normalize the path
    store = HTTPSimpleStore(FAST, None)
    info = store.get_resource_metadata({"url": server.url(path), "sha": SHA1})
    result = store.download_resource_content(info, str(tmp_path))
    assert result == str(tmp_path / expected)
    assert dest_files(tmp_path) == [expected]


def test_glob_characters_are_never_expanded(
    server: LoopbackServer, tmp_path: Path
) -> None:
    (tmp_path / "keep-a").write_bytes(b"a")
    (tmp_path / "keep-b").write_bytes(b"b")
    server.route(
        "/x", serve(b"bad", {"Content-Disposition": "attachment; filename=keep-*"})
    )
    store = HTTPSimpleStore(FAST, None)
    info = store.get_resource_metadata({"url": server.url("/x"), "sha": SHA1})
    with pytest.raises(IntegrityError):
        store.download_resource_content(info, str(tmp_path))
    assert dest_files(tmp_path) == ["keep-a", "keep-b"]


def test_mirrors_are_tried_in_order(server: LoopbackServer, tmp_path: Path) -> None:
    server.route("/second/origin/pkg/x.tgz", serve(CONTENT))
    server.route("/origin/pkg/x.tgz", serve(CONTENT))
    with closed_port() as down:
        store = HTTPSimpleStore(
            {
                **FAST,
                "retries": 1,
                "mirrors": [down, server.url("/first"), server.url("/second")],
            },
            None,
        )
        info = store.get_resource_metadata(
            {"url": server.url("/origin/pkg/x.tgz"), "sha": SHA1}
        )
        path = store.download_resource_content(info, str(tmp_path))
    assert Path(path).read_bytes() == CONTENT
    assert [r.path for r in server.requests()] == [
        "/first/origin/pkg/x.tgz",
        "/second/origin/pkg/x.tgz",
    ]


def test_origin_is_the_last_resort_unless_disabled(
    server: LoopbackServer, tmp_path: Path
) -> None:
    server.route("/origin/x.tgz", serve(CONTENT))
    mirrors = [server.url("/m1"), server.url("/m2")]
    store = HTTPSimpleStore({**FAST, "mirrors": mirrors}, None)
    info = store.get_resource_metadata(
        {"url": server.url("/origin/x.tgz"), "sha": SHA1}
    )
    store.download_resource_content(info, str(tmp_path / "a"))
    assert [r.path for r in server.requests()] == [
        "/m1/origin/x.tgz",
        "/m2/origin/x.tgz",
        "/origin/x.tgz",
    ]

    strict = HTTPSimpleStore(
        {**FAST, "mirrors": mirrors, "fallback_to_origin": False}, None
    )
    with pytest.raises(HTTPStatusError) as raised:
        strict.download_resource_content(info, str(tmp_path / "b"))
    assert raised.value.url == server.url("/m2/origin/x.tgz")
    assert len(server.requests("/origin/x.tgz")) == 1
    assert dest_files(tmp_path / "b") == []


def test_a_url_is_asked_once_however_often_the_mirrors_name_it(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # A mirror given twice, and one that is the origin's own base URL: each
    # URL answers 404 once, not once per time it is named.
    store = HTTPSimpleStore(
        {**FAST, "mirrors": [server.url("/m"), server.base, server.url("/m")]}, None
    )
    info = store.get_resource_metadata({"url": server.url("/x"), "sha": SHA1})
    with pytest.raises(HTTPStatusError):
        store.download_resource_content(info, str(tmp_path))
    assert [r.path for r in server.requests()] == ["/m/x", "/x"]


@pytest.mark.parametrize("suffix", ["#part", "?", "?#part"])
def test_a_url_that_differs_only_in_what_is_not_sent_is_asked_once(
    suffix: str, server: LoopbackServer, tmp_path: Path
) -> None:
    # The origin's own base URL as a mirror leads to the URL as it is sent:
    # no fragment, no empty query.
    store = HTTPSimpleStore({**FAST, "mirrors": [server.base]}, None)
    info = store.get_resource_metadata({"url": server.url("/x") + suffix, "sha": SHA1})
    with pytest.raises(HTTPStatusError):
        store.download_resource_content(info, str(tmp_path))
    assert len(server.requests()) == 1


def test_a_corrupt_mirror_is_skipped(server: LoopbackServer, tmp_path: Path) -> None:
    server.route("/bad/x", serve(b"corrupted"))
    server.route("/x", serve(CONTENT))
    store = HTTPSimpleStore({**FAST, "mirrors": [server.url("/bad")]}, None)
    info = store.get_resource_metadata({"url": server.url("/x"), "sha512": SHA512})
    path = store.download_resource_content(info, str(tmp_path))
    assert Path(path).read_bytes() == CONTENT
    assert dest_files(tmp_path) == ["x"]


def test_store_errors_are_store_errors(server: LoopbackServer, tmp_path: Path) -> None:
    store = HTTPSimpleStore({**FAST, "retries": 0}, None)
    with closed_port() as down:
        info = store.get_resource_metadata({"url": down + "/x", "sha": SHA1})
        with pytest.raises(StoreError) as raised:
            store.download_resource_content(info, str(tmp_path))
    assert raised.value.__cause__ is not None
    assert dest_files(tmp_path) == []


def test_pytest_httpserver_keep_alive_server(tmp_path: Path) -> None:
    """A third-party HTTP/1.1 server (werkzeug), not ours."""
    from pytest_httpserver import HTTPServer

    with HTTPServer(host="127.0.0.1") as httpserver:
        httpserver.expect_request("/dist/y.tar.gz").respond_with_data(
            CONTENT, content_type="application/gzip"
        )
        store = HTTPSimpleStore(FAST, None)
        info = store.get_resource_metadata(
            {"url": httpserver.url_for("/dist/y.tar.gz"), "sha256": SHA256}
        )
        path = store.download_resource_content(info, str(tmp_path))
        httpserver.check_assertions()
    assert path == str(tmp_path / "y.tar.gz")
    assert Path(path).read_bytes() == CONTENT


def test_store_is_a_typed_store() -> None:
    store = HTTPSimpleStore({}, None)
    assert isinstance(store, Store)


def test_importing_the_driver_does_not_import_requests() -> None:
    code = (
        "import sys\n"
        "import e3_typed_store.backends.base\n"
        "import e3_typed_store.backends.http_simple_store as h\n"
        "h.HTTPSimpleStore({}, None).get_resource_metadata("
        "{'url': 'http://h/x', 'sha': 'a' * 40})\n"
        "print(json.dumps('requests' in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is False


HIT_IN_A_FRESH_PROCESS = """
import json, sys
from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
from e3_typed_store.cache.backends.filecache import FileCache
url, sha256, cache_dir, dest, trust = sys.argv[1:]
store = HTTPSimpleStore(
    {"offline": True, "trust_unchanged_files": trust == "trust"},
    FileCache({"cache_dir": cache_dir}),
)
path = store.fetch_resource(
    store.get_resource_metadata({"url": url, "sha256": sha256}), dest
)
stack = ("requests", "urllib3", "http.client", "ssl", "socket")
print(json.dumps([path, [name for name in stack if name in sys.modules]]))
"""


@pytest.mark.parametrize("trust", ["verify", "trust"])
def test_a_cache_hit_does_not_import_the_http_stack(
    trust: str, server: LoopbackServer, tmp_path: Path
) -> None:
    from e3_typed_store.cache.backends.filecache import FileCache

    server.route("/a.bin", serve(CONTENT))
    url, cache_dir = server.url("/a.bin"), str(tmp_path / "cache")
    store = HTTPSimpleStore(FAST, FileCache({"cache_dir": cache_dir}))
    store.fetch_resource(
        store.get_resource_metadata({"url": url, "sha256": SHA256}),
        str(tmp_path / "one"),
    )
    dest = str(tmp_path / "two")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            HIT_IN_A_FRESH_PROCESS,
            url,
            SHA256,
            cache_dir,
            dest,
            trust,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    path, imported = json.loads(result.stdout)
    assert Path(path).read_bytes() == CONTENT
    assert imported == []
    assert len(server.requests("/a.bin")) == 1


# -- progress bar --------------------------------------------------------------


def read_all(fd: int) -> str:
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the terminal side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


@contextmanager
def stderr_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> Generator[list[str], None, None]:
    """Standard error on a pseudo-terminal of 24 rows and 100 columns (a new
    one has none); what was drawn on it is in the list once the block ends."""
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    controller, terminal_fd = os.openpty()
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    drawn: list[str] = []
    try:
        with open(terminal_fd, "w", encoding="utf-8") as terminal:
            with monkeypatch.context() as patch:
                patch.setattr(sys, "stderr", terminal)
                yield drawn
        drawn.append(read_all(controller))
    finally:
        os.close(controller)


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_bar_on_a_terminal_counts_bytes(
    server: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    enabled: bool,
) -> None:
    server.route("/x.bin", serve(CONTENT))
    with stderr_on_a_terminal(monkeypatch) as drawn:
        store = HTTPSimpleStore({**FAST, "progress": enabled}, None)
        info = store.get_resource_metadata({"url": server.url("/x.bin"), "sha": SHA1})
        store.download_resource_content(info, str(tmp_path))
    if enabled:
        # 69632 bytes, shown in binary units as tqdm does for e3.
        assert "x.bin" in drawn[0]
        assert "68.0k/68.0k" in drawn[0]
        assert "100%" in drawn[0]
    else:
        assert drawn == [""]


def test_a_download_with_stderr_closed_draws_no_bar(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process started with standard error closed has sys.stderr None.
    monkeypatch.setattr(sys, "stderr", None)
    server.route("/x.bin", serve(CONTENT))
    store = HTTPSimpleStore({**FAST, "progress": True}, None)
    info = store.get_resource_metadata({"url": server.url("/x.bin"), "sha": SHA1})
    path = store.download_resource_content(info, str(tmp_path))
    assert Path(path).read_bytes() == CONTENT


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    server: LoopbackServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.route("/x.bin", serve(CONTENT))
    store = HTTPSimpleStore({**FAST, "progress": True}, None)
    info = store.get_resource_metadata({"url": server.url("/x.bin"), "sha": SHA1})
    store.download_resource_content(info, str(tmp_path))
    assert capsys.readouterr().err == ""
