"""The GET this library prepares is the one requests' session would.

``prepare_get`` skips the merges of ``Session.prepare_request`` that cannot
change anything for the library's own sessions; these tests hold it to
requests' result, for awkward URLs, with and without a netrc file, and
through a real download.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from e3_typed_store._http import prepare_get
from tests.backends.fetching import fetch_over_http
from tests.httpserver import Exchange, LoopbackServer

HEADERS = {"Accept-Encoding": "identity", "Range": "bytes=10-"}

URLS = [
    "http://127.0.0.1:8080/r.bin",
    "http://127.0.0.1:8080/dir/r.bin?version=2&x=a%20b",
    "http://127.0.0.1/caf\u00e9 au lait.bin",
    "https://b\u00fccher.example/r.bin",
    "http://user:secret@127.0.0.1/r.bin",
    "http://[::1]:8080/r.bin",
    "HTTP://Example.COM/R.bin#fragment",
]

BAD_URLS = ["not a url", "http://", "127.0.0.1/r.bin", "http://exa mple.com/r"]


@pytest.fixture
def netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "netrc"
    path.write_text(
        "machine 127.0.0.1 login alice password wonderland\n", encoding="utf-8"
    )
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    yield path


@pytest.fixture
def no_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETRC", str(tmp_path / "absent"))


def as_requests_does(url: str) -> requests.PreparedRequest:
    session = requests.Session()
    return session.prepare_request(requests.Request("GET", url, headers=HEADERS))


def same(ours: requests.PreparedRequest, theirs: requests.PreparedRequest) -> None:
    assert ours.method == theirs.method == "GET"
    assert ours.url == theirs.url
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.body == theirs.body


@pytest.mark.usefixtures("no_netrc")
@pytest.mark.parametrize("url", URLS)
def test_a_get_is_prepared_as_a_session_prepares_it(url: str) -> None:
    same(prepare_get(requests.Session(), url, HEADERS), as_requests_does(url))


@pytest.mark.usefixtures("netrc")
@pytest.mark.parametrize("url", URLS)
def test_netrc_credentials_are_used_as_requests_uses_them(url: str) -> None:
    ours = prepare_get(requests.Session(), url, HEADERS)
    same(ours, as_requests_does(url))
    if "127.0.0.1" in url:
        expected = base64.b64encode(b"alice:wonderland").decode()
        assert ours.headers["Authorization"] == f"Basic {expected}"


@pytest.mark.usefixtures("netrc")
def test_a_session_that_ignores_the_environment_ignores_netrc() -> None:
    session = requests.Session()
    session.trust_env = False
    ours = prepare_get(session, URLS[0], HEADERS)
    assert "Authorization" not in ours.headers


@pytest.mark.usefixtures("no_netrc")
@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_fails_as_it_fails_in_requests(url: str) -> None:
    with pytest.raises(requests.RequestException) as theirs:
        as_requests_does(url)
    with pytest.raises(requests.RequestException) as ours:
        prepare_get(requests.Session(), url, HEADERS)
    assert type(ours.value) is type(theirs.value)


@pytest.mark.usefixtures("netrc", "no_proxy_variables")
def test_a_download_sends_the_netrc_credentials(tmp_path: Path) -> None:
    content = b"for alice only\n" * 100

    def guarded(exchange: Exchange) -> None:
        expected = "Basic " + base64.b64encode(b"alice:wonderland").decode()
        if exchange.request.headers.get("authorization") != expected:
            exchange.respond(401, b"who are you?")
            return
        exchange.respond(200, content)

    with LoopbackServer() as server:
        server.route("/r.bin", guarded)
        path = fetch_over_http(
            server.url("/r.bin"),
            tmp_path,
            hashlib.sha256(content).hexdigest(),
            {"progress": False, "retries": 0},
        )
    assert path.read_bytes() == content


@pytest.mark.usefixtures("netrc", "no_proxy_variables")
def test_netrc_credentials_do_not_follow_a_redirect_to_another_host(
    tmp_path: Path,
) -> None:
    # The netrc file names 127.0.0.1: a redirect to "localhost", the same
    # server under another name, must not carry 127.0.0.1's credentials.
    content = b"moved elsewhere\n" * 100
    with LoopbackServer() as server:
        port = server.port
        server.route(
            "/r.bin",
            lambda exchange: exchange.respond(
                302, b"", {"Location": f"http://localhost:{port}/moved.bin"}
            ),
        )
        server.route("/moved.bin", lambda exchange: exchange.respond(200, content))
        path = fetch_over_http(
            server.url("/r.bin"),
            tmp_path,
            hashlib.sha256(content).hexdigest(),
            {"progress": False, "retries": 0},
        )
        (first,) = server.requests("/r.bin")
        (second,) = server.requests("/moved.bin")
    assert path.read_bytes() == content
    assert first.headers["authorization"].startswith("Basic ")
    assert second.headers["host"] == f"localhost:{port}"
    assert "authorization" not in second.headers
