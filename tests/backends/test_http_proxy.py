"""Proxies from the environment, as requests (and so e3-core) honours them.

Two loopback servers: the origin, and a second one standing as the proxy. A
request through an HTTP proxy names the whole URL on its request line, so the
proxy sees ``GET http://127.0.0.1:<port>/r.bin`` and answers it itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3_typed_store.backends.http_simple_store import HTTPSimpleStoreConfiguration
from e3_typed_store.errors import DeadlineExceededError
from tests.backends.fetching import fetch_over_http
from tests.httpserver import TRICKLED_HEAD, Exchange, LoopbackServer

CONTENT = b"through the proxy or not\n" * 1000
SHA256 = hashlib.sha256(CONTENT).hexdigest()
QUICK: HTTPSimpleStoreConfiguration = {"progress": False, "retries": 0}


def answer(exchange: Exchange) -> None:
    exchange.respond(200, CONTENT, {})


@pytest.fixture
def origin() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.route("/r.bin", answer)
        yield server


@pytest.fixture
def proxy() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        server.route_all(answer)
        yield server


# Each test starts without any proxy setting, and sets what it needs.
pytestmark = pytest.mark.usefixtures("no_proxy_variables")


def fetch(url: str, dest: Path) -> bytes:
    return fetch_over_http(url, dest, SHA256, QUICK).read_bytes()


def test_without_proxy_variables_the_origin_is_asked(
    origin: LoopbackServer, proxy: LoopbackServer, tmp_path: Path
) -> None:
    assert fetch(origin.url("/r.bin"), tmp_path) == CONTENT
    assert len(origin.requests("/r.bin")) == 1
    assert proxy.requests() == []


@pytest.mark.parametrize("name", ["http_proxy", "HTTP_PROXY", "Http_Proxy"])
def test_an_http_proxy_variable_is_honoured(
    origin: LoopbackServer,
    proxy: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setenv(name, proxy.base)
    url = origin.url("/r.bin")
    assert fetch(url, tmp_path) == CONTENT
    assert [request.path for request in proxy.requests()] == [url]
    assert origin.requests() == []


def test_all_proxy_is_honoured(
    origin: LoopbackServer,
    proxy: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.base)
    assert fetch(origin.url("/r.bin"), tmp_path) == CONTENT
    assert len(proxy.requests()) == 1
    assert origin.requests() == []


def test_no_proxy_sends_the_request_to_the_origin(
    origin: LoopbackServer,
    proxy: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert fetch(origin.url("/r.bin"), tmp_path) == CONTENT
    assert len(origin.requests("/r.bin")) == 1
    assert proxy.requests() == []


def test_a_proxy_set_between_two_downloads_is_used_by_the_second(
    origin: LoopbackServer,
    proxy: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetch(origin.url("/r.bin"), tmp_path / "one")
    monkeypatch.setenv("http_proxy", proxy.base)
    fetch(origin.url("/r.bin"), tmp_path / "two")
    assert len(origin.requests("/r.bin")) == 1
    assert len(proxy.requests()) == 1


def test_a_proxy_trickling_its_head_is_cut_at_the_deadline(
    origin: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackServer() as slow_proxy:
        slow_proxy.route_all(lambda exchange: exchange.trickle(TRICKLED_HEAD))
        monkeypatch.setenv("http_proxy", slow_proxy.base)
        url = origin.url("/r.bin")
        with pytest.raises(DeadlineExceededError) as raised:
            fetch_over_http(
                url, tmp_path, SHA256, {**QUICK, "deadline": 1.0, "read_timeout": 30.0}
            )
        assert raised.value.deadline == 1.0
        assert 0 < slow_proxy.body_sent(url) < len(TRICKLED_HEAD)
    assert origin.requests() == []
