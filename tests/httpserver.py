"""A loopback HTTP server for the tests, scripted per test, down to the bytes.

Each test routes paths to handlers. A handler gets an :class:`Exchange` -- the
parsed request and the raw connection -- and answers as it likes: a clean
response, a body cut short, a lying ``Content-Length``, a trickle of bytes, a
stall, an abrupt reset. The server records every request and counts the body
bytes it managed to send, so tests assert on what really went over the wire.

One request per connection (every response says ``Connection: close``).
Stopping the server interrupts any handler that sleeps or writes, and joins
every thread it started.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType

__all__ = [
    "TRICKLED_HEAD",
    "Exchange",
    "Handler",
    "LoopbackServer",
    "Request",
    "closed_port",
]

#: A response head too long to send at a byte every 50 ms within a test's
#: time (2,000 bytes: 100 s), and never ended: the trickle is what is tested.
TRICKLED_HEAD = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 1967 + b"\r\n"

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Request:
    """A request as the server received it."""

    method: str
    path: str
    #: Header names in lower case.
    headers: Mapping[str, str]


@dataclass
class Exchange:
    """One request and the connection to answer it on."""

    request: Request
    _sock: socket.socket
    _stopping: threading.Event
    #: Body bytes sent so far (what :meth:`send` wrote).
    body_sent: int = 0
    #: The error that ended the handler, e.g. the client going away.
    error: BaseException | None = None
    #: Set once the handler has returned and the connection is closed.
    finished: threading.Event = field(default_factory=threading.Event)
    #: Whether the connection ends with a reset rather than a clean close.
    aborted: bool = False

    def send_head(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """Send the status line and headers (``Connection: close`` added)."""
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        lines.append("Connection: close")
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data: bytes) -> None:
        """Send body bytes, counted in :attr:`body_sent`."""
        view = memoryview(data)
        while view:
            sent = self._sock.send(view)
            self.body_sent += sent
            view = view[sent:]

    def respond(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        """Send a whole response with a truthful Content-Length."""
        self.send_head(status, {"Content-Length": str(len(body)), **(headers or {})})
        self.send(body)

    def trickle(self, data: bytes, every: float = 0.05) -> None:
        """Send *data* a byte at a time, one every *every* seconds."""
        for offset in range(len(data)):
            self.send(data[offset : offset + 1])
            self.sleep(every)

    def sleep(self, seconds: float) -> None:
        """Wait, unless the server stops first (then raise to end the handler)."""
        if self._stopping.wait(seconds):
            raise ConnectionAbortedError("server stopping")

    def reset(self) -> None:
        """End the connection abruptly, once the handler returns (RST, not FIN)."""
        self._sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.aborted = True

    def set_send_buffer(self, size: int) -> None:
        """Shrink the kernel send buffer, so that writes block early."""
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


Handler = Callable[[Exchange], None]


def not_found(exchange: Exchange) -> None:
    exchange.respond(404, b"no route\n")


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1; a context manager that stops it."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._routes: dict[str, Handler] = {}
        self._fallback: Handler = not_found
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self.exchanges: list[Exchange] = []
        self._acceptor = threading.Thread(target=self._accept, name="loopback-accept")
        self._acceptor.start()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, path: str) -> str:
        """Return the URL of *path* on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def base(self) -> str:
        """The server's base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str, handler: Handler) -> None:
        """Answer requests for *path* (query string excluded) with *handler*."""
        self._routes[path] = handler

    def route_all(self, handler: Handler) -> None:
        """Answer requests for paths without a route with *handler*."""
        self._fallback = handler

    def requests(self, path: str | None = None) -> list[Request]:
        """The requests received so far, for *path* or all of them."""
        with self._lock:
            found = [exchange.request for exchange in self.exchanges]
        return [r for r in found if path is None or r.path.split("?")[0] == path]

    def body_sent(self, path: str) -> int:
        """The body bytes sent so far in answer to *path*, every request included."""
        with self._lock:
            exchanges = list(self.exchanges)
        return sum(
            e.body_sent for e in exchanges if e.request.path.split("?")[0] == path
        )

    def wait_finished(self, timeout: float = 10.0) -> None:
        """Wait until every handler started so far has returned."""
        with self._lock:
            exchanges = list(self.exchanges)
        for exchange in exchanges:
            if not exchange.finished.wait(timeout):
                raise TimeoutError(f"handler for {exchange.request.path} still running")

    def stop(self) -> None:
        """Stop accepting, interrupt the handlers, join every thread."""
        self._stopping.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(10)
            if thread.is_alive():
                raise RuntimeError(f"server thread {thread.name} did not stop")

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="loopback-conn"
            )
            with self._lock:
                self._open.add(sock)
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        exchange: Exchange | None = None
        try:
            sock.settimeout(10)
            request = _read_request(sock)
            if request is None:
                return
            exchange = Exchange(request, sock, self._stopping)
            with self._lock:
                self.exchanges.append(exchange)
            handler = self._routes.get(request.path.split("?")[0], self._fallback)
            try:
                handler(exchange)
            except OSError as exc:  # the client went away, or the server stops
                exchange.error = exc
        finally:
            with self._lock:
                self._open.discard(sock)
            if exchange is None or not exchange.aborted:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            sock.close()
            if exchange is not None:
                exchange.finished.set()


def _read_request(sock: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except OSError:
            return None
        if not chunk or len(data) > _MAX_HEAD:
            return None
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    request_line, *header_lines = head.split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers)


@contextmanager
def closed_port() -> Generator[str]:
    """Yield the base URL of a loopback port where nothing listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    yield f"http://127.0.0.1:{port}"
