"""Loopback servers for the store contracts, one pair per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e3_typed_store._demo import DemoServer


def _payload(request: pytest.FixtureRequest) -> bytes:
    module: object = getattr(request.node, "module", None)
    payload: object = getattr(module, "PAYLOAD", None)
    assert isinstance(payload, bytes), "a contract module defines PAYLOAD = b'...'"
    return payload


@pytest.fixture(scope="module")
def demo_server(request: pytest.FixtureRequest) -> Iterator[DemoServer]:
    """Serve the module's PAYLOAD as ``res.tgz``."""
    server = DemoServer({"res.tgz": _payload(request)})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile_server(request: pytest.FixtureRequest) -> Iterator[DemoServer]:
    """The same, suggesting a file name outside the destination directory."""
    server = DemoServer(
        {"res.tgz": _payload(request)}, hostile_names={"res.tgz": "../escaped.tgz"}
    )
    yield server
    server.stop()
