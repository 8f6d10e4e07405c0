"""The request watchdog against a real connection opened after the deadline.

A host name with several addresses can keep a connection in its connect
calls beyond the deadline, when the watchdog finds no socket to shut. It then
looks again until the connection has one, and shuts it at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import urllib3.connection

from e3_typed_store._watchdog import RequestWatchdog


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(5)
        yield sock


def test_a_connection_opened_after_the_deadline_is_shut_once_it_has_a_socket(
    listener: socket.socket,
) -> None:
    port: int = listener.getsockname()[1]
    connection = urllib3.connection.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        with RequestWatchdog(0.05) as watchdog:
            watchdog.attach(connection)
            time.sleep(0.3)  # time is up while the connection has no socket
            assert watchdog.fired
            connection.connect()
            accepted, _address = listener.accept()
            with accepted:
                accepted.settimeout(5)
                # End of stream: the client's side was shut down, not left open
                # until the 5 s timeout.
                assert accepted.recv(1) == b""
    finally:
        connection.close()


def test_a_request_left_in_time_leaves_its_connection_open(
    listener: socket.socket,
) -> None:
    port: int = listener.getsockname()[1]
    connection = urllib3.connection.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        with RequestWatchdog(0.2) as watchdog:
            watchdog.attach(connection)
            connection.connect()
        time.sleep(0.4)  # past the time the watchdog was set for
        assert not watchdog.fired
        accepted, _address = listener.accept()
        with accepted:
            assert connection.sock is not None
            connection.sock.sendall(b"still open")
            assert accepted.recv(10) == b"still open"
    finally:
        connection.close()
