"""Cut an HTTP exchange at its deadline, whatever the server does meanwhile.

A read timeout bounds each wait for bytes, not the exchange: a server that
sends a byte just before every read timeout keeps a blocked read going for
ever. A watchdog here shuts the socket down when the deadline comes, which
wakes the read at once with an error. :class:`BodyWatchdog` watches the read
of a body; :class:`RequestWatchdog` watches a request from the moment its
connection leaves the pool until the response's head is read, through
:class:`WatchedAdapter`, the adapter the download's sessions mount.

The alarms of every watchdog share one thread (:data:`ALARMS`): starting a
timer thread per request would cost more than a small download.

What no watchdog reaches: the system's DNS resolver, and a connect still in
progress (each address is tried for the connect timeout, capped by what is left
of the deadline): there is no socket to shut down yet. For the resolver, a new
connection's host name is resolved first in a helper thread, waited for only
until the deadline (:meth:`RequestWatchdog.resolve`).
"""

from __future__ import annotations

import heapq
import http.client
import io
import math
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.poolmanager
import urllib3.response

from e3_typed_store._runtime import reset_in_forked_child
from e3_typed_store._types import override

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection
else:
    # urllib3 defines its connection protocol for type checkers only; at run
    # time (for beartype) a pool's connections are of this class.
    BaseHTTPConnection = urllib3.connection.HTTPConnection

__all__ = [
    "ALARMS",
    "BodyWatchdog",
    "EndlessInformationalError",
    "FinalResponse",
    "HeadCutError",
    "RequestWatchdog",
    "WatchedAdapter",
]

#: How often a watchdog whose time is up looks again for the socket of a
#: connection that was still being opened.
_LOOK_AGAIN = 0.01


@runtime_checkable
class _Alarm(Protocol):
    def fire(self) -> None:
        """Wake whatever waits; called by the alarm thread, its lock held."""


class Alarms:
    """One daemon thread firing the alarms whose time is up, earliest first.

    An alarm is fired with the lock held, and :meth:`cancel` takes the lock:
    once ``cancel`` returns, the alarm is not being fired and never will be.
    After a fork the child starts afresh (the thread does not survive it).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start with no alarm and no thread (also in a forked child)."""
        # An RLock: an alarm may set itself again from its fire().
        self._condition = threading.Condition(threading.RLock())
        self._due: list[tuple[float, int, _Alarm]] = []
        self._thread: threading.Thread | None = None
        self._count = 0
        # When the thread wakes up next (monotonic time; inf: when notified).
        self._wake_at = math.inf

    def add(self, alarm: _Alarm, when: float) -> None:
        """Fire *alarm* at *when* (``time.monotonic()`` time) unless cancelled."""
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="e3-typed-store-watchdog", daemon=True
                )
                self._thread.start()
            self._count += 1
            heapq.heappush(self._due, (when, self._count, alarm))
            # Woken only to wait less: an alarm due after the thread's next
            # wake-up is seen then. One download after another, each setting
            # an alarm for its deadline and cancelling it, wakes it not at all.
            if when < self._wake_at:
                self._wake_at = when
                self._condition.notify()

    def cancel(self, alarm: _Alarm) -> None:
        """Forget *alarm*; it is not firing once this returns."""
        with self._condition:
            for index, entry in enumerate(self._due):
                if entry[2] is alarm:
                    self._due[index] = self._due[-1]
                    self._due.pop()
                    heapq.heapify(self._due)
                    break

    def _run(self) -> None:
        with self._condition:
            while True:
                if not self._due:
                    self._wake_at = math.inf
                    self._condition.wait()
                    continue
                when = self._due[0][0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._wake_at = when
                    # At most what the platform can time: a deadline of 1e10
                    # seconds is valid, and must not end this thread.
                    self._condition.wait(min(delay, threading.TIMEOUT_MAX))
                    continue
                heapq.heappop(self._due)[2].fire()


#: The alarms of every watchdog of the process.
ALARMS = Alarms()
reset_in_forked_child(ALARMS.reset)


class _Watchdog:
    """A context manager that fires once at the end of *seconds* unless left."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        #: Whether the time was up before the block ended.
        self.fired = False

    def __enter__(self) -> _Watchdog:
        ALARMS.add(self, time.monotonic() + self._seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        ALARMS.cancel(self)

    def fire(self) -> None:
        """Mark the time as up and wake the read (called by the alarm thread)."""
        self.fired = True
        self._wake()

    def _wake(self) -> None:
        raise NotImplementedError


class BodyWatchdog(_Watchdog):
    """Shut a response's socket down when time is up, waking a blocked read."""

    def __init__(self, raw: urllib3.response.HTTPResponse, seconds: float) -> None:
        super().__init__(seconds)
        self._raw = raw

    @override
    def _wake(self) -> None:
        try:
            self._raw.shutdown()
        except (RuntimeError, ValueError, OSError):
            pass  # the response was closed or released meanwhile: nothing to wake


class RequestWatchdog(_Watchdog):
    """Shut the socket of the calling thread's request down when time is up.

    Covers what the thread sends through a :class:`WatchedAdapter` inside the
    ``with`` block: the request, and the wait for the response's head, which a
    server can trickle a byte at a time. A connection still being opened when
    the time is up has no socket yet: the watchdog looks again every
    :data:`_LOOK_AGAIN` seconds and shuts it as soon as it has one.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self._connection: object = None
        self._due = 0.0
        #: Whether the request went on a connection opened for it, not one
        #: kept from an earlier request (None: it got no connection).
        self.fresh: bool | None = None

    @override
    def __enter__(self) -> RequestWatchdog:
        _WATCHED.request = self
        self._due = time.monotonic() + self._seconds
        super().__enter__()
        return self

    @override
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc_value, traceback)
        _WATCHED.request = None

    def attach(self, connection: object) -> None:
        """Watch *connection*, the one the request is sent on (pool's thread)."""
        self._connection = connection
        self.fresh = (
            connection.sock is None
            if isinstance(connection, urllib3.connection.HTTPConnection)
            else None
        )

    def resolve(self, connection: object) -> None:
        """Resolve the host name of a new *connection* now, within the time left.

        The connection resolves its host itself, through the system's resolver,
        which nothing can wake: a name server that does not answer holds it for
        the resolver's own timeouts (10 s and more). Resolved first in a helper
        thread, the name is waited for only until the deadline; a name server
        that answered then answers the connection's own query too, from the
        answer it keeps. A connection already open, or to an address rather
        than a name, needs no resolving.

        :raises TimeoutError: the time was up before the name was resolved;
            :attr:`fired` is then true
        """
        if not isinstance(connection, urllib3.connection.HTTPConnection):
            return
        if connection.sock is not None or _is_address(connection.host):
            return
        resolved = threading.Event()
        threading.Thread(
            target=_resolve,
            args=(connection.host, connection.port, resolved),
            name="e3-typed-store-resolve",
            daemon=True,
        ).start()
        while not resolved.wait(
            min(max(0.0, self._due - time.monotonic()), threading.TIMEOUT_MAX)
        ):
            if time.monotonic() >= self._due:
                self.fired = True
                raise TimeoutError(
                    f"resolving {connection.host} outlasted the deadline"
                )

    @override
    def _wake(self) -> None:
        connection = self._connection
        sock = (
            connection.sock
            if isinstance(connection, urllib3.connection.HTTPConnection)
            else None
        )
        if not isinstance(sock, socket.socket):
            ALARMS.add(self, time.monotonic() + _LOOK_AGAIN)
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed meanwhile: nothing to wake


class _Watched(threading.local):
    request: RequestWatchdog | None = None


_WATCHED = _Watched()


def _watch(connection: object) -> None:
    watchdog = _WATCHED.request
    if watchdog is not None:
        watchdog.attach(connection)
        watchdog.resolve(connection)


def _resolve(host: str, port: int, resolved: threading.Event) -> None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        pass  # the connection's own resolution fails and says why
    finally:
        resolved.set()


def _is_address(host: str) -> bool:
    """Tell whether *host* is an IP address (no name to resolve)."""
    bare = host.strip("[]").split("%", 1)[0]  # brackets, an IPv6 zone
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, bare)
        except (OSError, ValueError):
            continue
        return True
    return False


# The most header lines, and bytes in one, of an informational answer skipped.
_MAX_SKIPPED_LINES = 100
_MAX_LINE = 65536


class FinalResponse(http.client.HTTPResponse):
    """http.client's response, reading past informational answers (1xx), and
    telling a head cut short from a whole one.

    http.client skips ``100 Continue`` only: a ``103 Early Hints`` sent
    before the real answer was taken for the answer, and the real one was
    left on the connection, for the next request to read as its own. And it
    takes the end of the stream for the end of the head: a connection closed
    after ``HTTP/1.1 200 OK`` was an answer with no headers and an empty
    body, where it is a dropped connection (:class:`HeadCutError`).
    """

    @override
    def begin(self) -> None:
        if isinstance(self.fp, _LineReader):  # begun already
            super().begin()
            return
        # The reader http.client made, replaced by one that sees how each
        # line ends, over the same stream: nothing was read from it yet (the
        # head is the first thing read), so nothing buffered is lost, and
        # detached, it leaves the stream open. A socket, or what urllib3 has
        # for TLS through a TLS proxy: this class never sees which.
        reader = _LineReader(self.fp.detach())
        self.fp = reader
        # Informational heads are read and dropped; the first other status
        # line is given back, for http.client to read as the answer's.
        skipped = 0
        while _is_informational(line := reader.readline(_MAX_LINE + 1)):
            for _ in range(_MAX_SKIPPED_LINES):
                if reader.readline(_MAX_LINE) in (b"\r\n", b"\n", b""):
                    break
            skipped += 1
            if skipped > _MAX_SKIPPED_LINES:
                raise EndlessInformationalError(skipped)
        reader.unread(line)
        try:
            super().begin()
        except http.client.RemoteDisconnected:
            raise  # nothing came
        except http.client.BadStatusLine as exc:
            # "HTTP/1.1 20", then the end: the start of an HTTP answer, cut.
            # Anything else is no HTTP, cut or not.
            cut = reader.cut
            if cut is not None and (
                cut.startswith(b"HTTP/") or b"HTTP/".startswith(cut)
            ):
                raise HeadCutError from exc
            raise
        if reader.cut is not None:
            raise HeadCutError


def _is_informational(line: bytes) -> bool:
    """Whether *line* is the whole status line of an informational answer
    other than 101 Switching Protocols, as http.client reads a status line."""
    if not line.endswith(b"\n"):
        return False
    fields = str(line, "iso-8859-1").split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/"):
        return False
    try:
        status = int(fields[1])
    except ValueError:
        return False
    return 100 <= status < 200 and status != 101


class _LineReader(io.BufferedReader):
    """A connection's reader that takes back one line, and notes a line cut
    short by the end of the stream (a head that never ended)."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__(raw)
        self._pending: bytes | None = None
        #: The line that the end of the stream cut before its line break, if
        #: one was read.
        self.cut: bytes | None = None

    def unread(self, line: bytes) -> None:
        """Have the next :meth:`readline` return *line* (read just before)."""
        self._pending = line

    @override
    def readline(self, size: int | None = -1, /) -> bytes:
        if self._pending is not None:
            line, self._pending = self._pending, None
            return line
        line = super().readline(size)
        limited = size is not None and 0 <= size <= len(line)
        if not line.endswith(b"\n") and not limited:
            self.cut = line
        return line


class HeadCutError(http.client.RemoteDisconnected):
    """The connection closed in the middle of an answer's head: dropped, as
    one closed before any answer is."""

    def __init__(self) -> None:
        super().__init__("the connection closed in the middle of the answer's head")


class EndlessInformationalError(http.client.HTTPException):
    """A server sent informational answers (1xx) with no end in sight."""

    def __init__(self, count: int) -> None:
        super().__init__(f"got more than {count - 1} informational answers")


def _prepare(connection: object) -> None:
    """Ready a connection a pool hands out: watched by the thread's watchdog,
    reading past informational answers."""
    _watch(connection)
    if isinstance(connection, http.client.HTTPConnection):
        connection.response_class = FinalResponse


# The pools are named as urllib3's: the name shows in error messages
# ("HTTPConnectionPool(host=..., port=...): Max retries exceeded...").


class HTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    """urllib3's pool, handing each connection to the thread's watchdog."""

    @override
    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        connection = super()._get_conn(timeout)
        _prepare(connection)
        return connection


class HTTPSConnectionPool(urllib3.connectionpool.HTTPSConnectionPool):
    """urllib3's pool, handing each connection to the thread's watchdog."""

    @override
    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        connection = super()._get_conn(timeout)
        _prepare(connection)
        return connection


_POOL_CLASSES: dict[str, type[urllib3.connectionpool.HTTPConnectionPool]] = {
    "http": HTTPConnectionPool,
    "https": HTTPSConnectionPool,
}


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, whose connections a :class:`RequestWatchdog` can shut.

    Its pools, proxies' included, hand every connection they give out to the
    thread's current :class:`RequestWatchdog`, if any; nothing else changes.
    """

    @override
    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = False,
        **pool_kwargs: object,
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    @override
    def proxy_manager_for(
        self, proxy: str, **proxy_kwargs: object
    ) -> urllib3.poolmanager.PoolManager:
        manager: urllib3.poolmanager.PoolManager = super().proxy_manager_for(
            proxy, **proxy_kwargs
        )
        if isinstance(manager, urllib3.poolmanager.ProxyManager):
            # Not a SOCKS proxy's manager, whose pools are SOCKS pools.
            manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager
