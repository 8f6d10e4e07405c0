"""Credentials written into a URL never show: not in errors, logs, reprs or
the command line's output; they still reach the server that was named."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3_typed_store import load_store
from e3_typed_store._redact import hide_credentials, hide_url_credentials, one_line
from e3_typed_store.backends.http_simple_store import HTTPSimpleQuery, HTTPSimpleStore
from e3_typed_store.errors import (
    DeadlineExceededError,
    DestinationError,
    DownloadError,
    HTTPStatusError,
    IntegrityError,
    InvalidConfigurationError,
    InvalidQueryError,
    StoreError,
)
from tests.httpserver import Exchange, LoopbackServer, closed_port

SECRET = "S3cret-pw"
TOKEN = "ghp-T0KEN"
PAYLOAD = b"guarded payload\n" * 512
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
WRONG = "0" * 64


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:pw@host/x", "http://user:***@host/x"),
        ("https://token@host:8080/x?q=1", "https://***@host:8080/x?q=1"),
        ("http://user:@host/", "http://user:***@host/"),
        ("http://a@b:c@host/", "http://a@b:***@host/"),  # urlsplit: user "a@b"
        ("http://a@b@host/", "http://***@host/"),  # a token up to the last "@"
        ("http://u:p@ss@host/p@th", "http://u:***@host/p@th"),
        ("http://host/a@b", "http://host/a@b"),  # an "@" in the path is no secret
        ("http://host/x?mail=a@b", "http://host/x?mail=a@b"),
        (
            "redirect from 'http://a:1@x/' to 'https://b:2@y/z'",
            "redirect from 'http://a:***@x/' to 'https://b:***@y/z'",
        ),
        ("no url here", "no url here"),
        ("http://user:***@host/", "http://user:***@host/"),  # hidden stays so
    ],
)
def test_hide_credentials(text: str, shown: str) -> None:
    assert hide_credentials(text) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host/x", "http://user:***@host/x"),
        ("http://user:p#w/x?y@host/x", "http://user:***@host/x"),
        ("http://to/ken@host/x", "http://***@host/x"),
        ("http://host/x", "http://host/x"),
        ("no url", "no url"),
        ("http:user:pw@host/x", "http:user:***@host/x"),  # no "//"
        ("[b'http://u:p/w@h/']", "[b'http://u:***@h/']"),  # a repr
    ],
)
def test_hide_url_credentials(url: str, shown: str) -> None:
    assert hide_url_credentials(url) == shown


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    def payload(exchange: Exchange) -> None:
        exchange.respond(200, PAYLOAD)

    def moved(exchange: Exchange) -> None:
        exchange.send_head(302, {"Location": f"http://intruder:{SECRET}@127.0.0.1:1/"})

    def busy(exchange: Exchange) -> None:
        exchange.respond(503, b"busy")

    with LoopbackServer() as running:
        running.route("/ok.bin", payload)
        running.route("/moved.bin", moved)
        running.route("/busy.bin", busy)
        yield running


def with_password(server: LoopbackServer, path: str) -> str:
    return f"http://user:{SECRET}@127.0.0.1:{server.port}{path}"


def fetch(url: str, sha256: str, dest: Path) -> StoreError:
    store = HTTPSimpleStore(
        {"progress": False, "retries": 1, "backoff_base": 0.0}, None
    )
    info = store.get_resource_metadata({"url": url, "sha256": sha256})
    assert SECRET not in repr(info)
    with pytest.raises(StoreError) as raised:
        store.download_resource_content(info, str(dest))
    return raised.value


def assert_hidden(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert SECRET not in repr(pickle.loads(pickle.dumps(error)))
    assert SECRET not in str(getattr(error, "url", ""))
    logged = [record.getMessage() for record in caplog.records]
    assert logged, "the failure was logged"
    assert not [line for line in logged if SECRET in line]


@pytest.mark.parametrize(
    ("path", "sha256", "kind", "named"),
    [
        ("/ok.bin", WRONG, IntegrityError, "user:***@127.0.0.1:{port}/ok.bin"),
        ("/missing.bin", SHA256, HTTPStatusError, "user:***@127.0.0.1:{port}/"),
        # retried, then given up
        ("/busy.bin", SHA256, HTTPStatusError, "user:***@127.0.0.1:{port}/"),
        # to a port nobody listens on: the error names the target
        ("/moved.bin", SHA256, DownloadError, "intruder:***@127.0.0.1:1/"),
    ],
    ids=["wrong-digest", "404", "503-retried", "redirect-with-credentials"],
)
def test_no_failure_shows_the_password(
    server: LoopbackServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    path: str,
    sha256: str,
    kind: type[StoreError],
    named: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    error = fetch(with_password(server, path), sha256, tmp_path)
    assert isinstance(error, kind)
    assert named.format(port=server.port) in str(error)
    assert_hidden(error, caplog)


def test_a_refused_connection_does_not_show_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with closed_port() as base:
        url = base.replace("http://", f"http://{TOKEN}@") + "/x.bin"
        store = HTTPSimpleStore({"progress": False, "retries": 0}, None)
        info = store.get_resource_metadata({"url": url, "sha256": SHA256})
        path = store.download_resource(info, str(tmp_path))  # logs, returns None
    assert path is None
    logged = [record.getMessage() for record in caplog.records]
    assert [line for line in logged if "***@127.0.0.1" in line]
    assert not [line for line in logged if TOKEN in line]


def test_the_password_still_reaches_the_server(
    server: LoopbackServer, tmp_path: Path
) -> None:
    store = HTTPSimpleStore({"progress": False}, None)
    info = store.get_resource_metadata(
        {"url": with_password(server, "/ok.bin"), "sha256": SHA256}
    )
    path = store.download_resource_content(info, str(tmp_path))
    assert Path(path).read_bytes() == PAYLOAD
    sent = server.requests("/ok.bin")[0].headers["authorization"]
    assert sent == "Basic " + base64.b64encode(f"user:{SECRET}".encode()).decode()


def test_errors_hide_the_credentials_of_the_url_they_are_given() -> None:
    url = f"https://user:{SECRET}@mirror.example/x.tgz"
    errors: list[StoreError] = [
        IntegrityError(url, "a" * 64, "b" * 64),
        DownloadError(url, f"redirect to {url!r} refused"),
        HTTPStatusError(url, 404),
        DeadlineExceededError(url, 5.0),
        DestinationError(url, "/tmp/d", "no space left"),
        InvalidQueryError("url", url, "only http and https URLs are served"),
        InvalidConfigurationError("mirrors", [url], "a mirror base URL has no query"),
    ]
    for error in errors:
        assert "user:***@mirror.example" in str(error), error
        for shown in (str(error), repr(error), repr(pickle.loads(pickle.dumps(error)))):
            assert SECRET not in shown, shown


def test_bad_queries_and_mirrors_do_not_show_the_password() -> None:
    with pytest.raises(InvalidQueryError) as query:
        HTTPSimpleStore({}, None).get_resource_metadata(
            {"url": f"ftp://user:{SECRET}@127.0.0.1/x", "sha256": SHA256}
        )
    with pytest.raises(InvalidConfigurationError) as mirrors:
        HTTPSimpleStore({"mirrors": [f"http://m:{SECRET}@127.0.0.1/b?q=1"]}, None)
    for error in (query.value, mirrors.value):
        assert SECRET not in str(error)
        assert ":***@127.0.0.1" in str(error)


def test_the_command_line_does_not_show_the_password(
    server: LoopbackServer, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "e3_typed_store",
            "-v",
            "fetch",
            with_password(server, "/missing.bin"),
            "--sha256",
            SHA256,
            "--dest",
            str(tmp_path / "dest"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert "user:***@127.0.0.1" in result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}#x@127.0.0.1:1/x",  # '#' unencoded: a bad port
        f"http://user:{SECRET}/x@127.0.0.1/x",  # '/' unencoded
        f"ftp://user:{SECRET}@127.0.0.1/x",
        f"http://user:{SECRET}\u00e9\u4e00@127.0.0.1/x",  # not Latin-1
        f"http:user:{SECRET}@127.0.0.1/x",  # no "//": a browser reads it so
        f"http:\\\\user:{SECRET}@127.0.0.1/x",
    ],
    ids=["hash", "slash", "ftp", "not-latin-1", "no-slashes", "backslashes"],
)
def test_a_refused_url_does_not_keep_the_password(url: str) -> None:
    with pytest.raises(InvalidQueryError) as raised:
        HTTPSimpleStore({}, None).get_resource_metadata({"url": url, "sha256": SHA256})
    error = raised.value
    related = (error.__cause__, error.__context__)
    for shown in (str(error), repr(error), repr(error.value), *map(repr, related)):
        assert SECRET not in shown
    assert SECRET.encode() not in pickle.dumps(error)


@pytest.mark.parametrize(
    "mirrors",
    [
        [f"http://m:{SECRET}#x@127.0.0.1:1/b"],
        [f"http://m:{SECRET}@h/b?q"],
        f"http://m:{SECRET}/x@h/b",  # a string, not a list
        [f"http://m:{SECRET}@h/b".encode()],  # bytes
        {f"http://m:{SECRET}@h/b": 1},
        [f"http://m:{SECRET}\u00e9\u4e00@127.0.0.1/b"],  # no request could send it
        [f"http://m:{SECRET}%E2%82%AC@127.0.0.1/b"],  # the same, percent-encoded
    ],
    ids=["hash", "query", "string", "bytes", "mapping", "not-latin-1", "encoded"],
)
def test_a_mirror_refused_does_not_keep_the_password(mirrors: object) -> None:
    with pytest.raises(InvalidConfigurationError) as raised:
        load_store("http-simple-store", {"mirrors": mirrors}, None)  # as from a file
    error = raised.value
    for shown in (str(error), repr(error.value), repr(error.__context__)):
        assert SECRET not in shown
    assert SECRET.encode() not in pickle.dumps(error)


# Untyped code, as a program that does not type-check its calls runs it.
NOT_METADATA = f"""
import logging, sys
from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
logging.basicConfig(level=logging.ERROR, stream=sys.stdout)
query = {{"url": "http://user:{SECRET}/x@127.0.0.1/x", "sha256": "{SHA256}"}}
store = HTTPSimpleStore({{"progress": False}}, None)
print(store.download_resource(query, sys.argv[1]))
"""


def test_what_is_no_metadata_is_logged_without_the_password(tmp_path: Path) -> None:
    # With runtime checks off, a query handed where metadata goes is refused,
    # and logged: without the password it holds.
    result = subprocess.run(
        [sys.executable, "-c", NOT_METADATA, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "E3_TYPED_STORE_RUNTIME_CHECKS": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "ERROR:e3.store:cannot get resource" in result.stdout
    assert result.stdout.rstrip().endswith("None")
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cannot write\n  /a  b/c\r\n", "cannot write /a  b/c"),
        ("x\x1b[31mred\ttab", "x\\x1b[31mred\\ttab"),
        ("name\u202egpj.exe and\u2028more", "name\\u202egpj.exe and more"),
        ("p\udcffq", "p\udcffq"),  # a byte of no text, written back as itself
        ("a\x00b\x7f", "a\\x00b\\x7f"),
        ("a\n\n  \nb", "a b"),
        ("no\u00a0break", "no\\xa0break"),  # Python counts it no printable
        ("", ""),
    ],
)
def test_one_line_keeps_a_message_on_its_line_and_off_the_terminal(
    text: str, shown: str
) -> None:
    assert one_line(text) == shown


def test_a_redirect_to_credentials_no_request_can_send_is_that_urls_failure(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # Basic authentication sends them in Latin-1: a redirect to these cannot
    # be followed. The origin is asked next, and serves.
    target = f"http://u:{SECRET}\u00e9\u4e00@127.0.0.1:{server.port}/payload.bin"
    server.route(
        "/m/payload.bin",
        lambda exchange: exchange.respond(
            302, b"", {"Location": target.encode().decode("latin-1")}
        ),
    )
    server.route("/payload.bin", lambda exchange: exchange.respond(200, PAYLOAD))
    mirror = f"{server.base}/m"
    store = HTTPSimpleStore({"progress": False, "mirrors": [mirror]}, None)
    query: HTTPSimpleQuery = {"url": server.url("/payload.bin"), "sha256": SHA256}
    path = store.fetch_resource(store.get_resource_metadata(query), str(tmp_path))
    assert Path(path).read_bytes() == PAYLOAD

    alone = HTTPSimpleStore(
        {"progress": False, "mirrors": [mirror], "fallback_to_origin": False}, None
    )
    with pytest.raises(DownloadError) as raised:
        alone.fetch_resource(alone.get_resource_metadata(query), str(tmp_path / "b"))
    error = raised.value
    assert "(in the URL or a netrc file) is not Latin-1" in str(error)
    assert error.__cause__ is None
    for shown in (str(error), repr(error), repr(error.__context__)):
        assert SECRET not in shown


def test_netrc_credentials_no_request_can_send_are_that_urls_failure(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        f"machine 127.0.0.1 login u password {SECRET}\u4e00\n", encoding="utf-8"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.route("/payload.bin", lambda exchange: exchange.respond(200, PAYLOAD))
    store = HTTPSimpleStore({"progress": False}, None)
    query: HTTPSimpleQuery = {"url": server.url("/payload.bin"), "sha256": SHA256}
    with pytest.raises(DownloadError) as raised:
        store.fetch_resource(store.get_resource_metadata(query), str(tmp_path / "d"))
    error = raised.value
    assert "(in the URL or a netrc file) is not Latin-1" in str(error)
    assert SECRET not in str(error) and error.__cause__ is None
    assert server.requests() == []  # nothing could be sent
