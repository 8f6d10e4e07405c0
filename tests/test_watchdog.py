"""The watchdogs' alarm thread, and the request watchdog against real sockets.

A host name with several addresses can keep a connection in its connect
calls beyond the deadline, when the watchdog finds no socket to shut. It then
looks again until the connection has one, and shuts it at once.

The alarm thread is woken only when an alarm is due before its next wake-up;
an alarm set for later must still fire, once the thread wakes for the earlier
one, even when that one was cancelled.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3.connection

from e3_typed_store._watchdog import Alarms, RequestWatchdog


class Recorder:
    """An alarm that notes when it fired."""

    def __init__(self, name: str, fired: list[str]) -> None:
        self.name = name
        self._fired = fired
        self.done = threading.Event()

    def fire(self) -> None:
        self._fired.append(self.name)
        self.done.set()


def test_alarms_fire_earliest_first_whatever_the_order_they_were_set_in() -> None:
    alarms = Alarms()
    fired: list[str] = []
    late, early = Recorder("late", fired), Recorder("early", fired)
    now = time.monotonic()
    alarms.add(late, now + 0.3)
    alarms.add(early, now + 0.05)  # sooner than the thread's wait: wakes it
    assert late.done.wait(5)
    assert fired == ["early", "late"]


def test_an_alarm_set_after_the_next_wake_up_fires_though_that_one_was_cancelled() -> (
    None
):
    alarms = Alarms()
    fired: list[str] = []
    cancelled, later = Recorder("cancelled", fired), Recorder("later", fired)
    now = time.monotonic()
    alarms.add(cancelled, now + 0.1)
    time.sleep(0.02)  # the thread now waits until the first alarm is due
    alarms.cancel(cancelled)
    alarms.add(later, now + 0.3)  # due after that wake-up: the thread sleeps on
    assert later.done.wait(5)
    assert fired == ["later"]
    # Idle again, the thread is woken by the next alarm, however far.
    again = Recorder("again", fired)
    alarms.add(again, time.monotonic() + 0.05)
    assert again.done.wait(5)
    assert fired == ["later", "again"]


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
