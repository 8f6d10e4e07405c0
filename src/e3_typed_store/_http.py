"""Streaming HTTP downloads: one pass, hashed on the fly, bounded in time.

:func:`download` fetches a resource from a list of candidate URLs into a
temporary file of the destination directory, hashing the bytes as they arrive
(in the reading thread up to :data:`INLINE_DIGEST_BYTES`, by a worker thread
beyond), and moves the file into place only once its digest is the expected
one. On the way it enforces connect and read timeouts and a total
deadline, retries transient failures with exponential backoff (honouring
``Retry-After``), resumes a dropped transfer with a ``Range`` request when the
server supports it, follows redirects itself (http and https only, a bounded
number of hops, the redirect bodies never read), and never reads an error body
beyond a short snippet for the log. Connections to a server are kept open
from one download to the next, per thread (see :class:`_ThreadSessions`), until
the thread ends or closes them (:func:`close_thread_connections`).
Every failure leaves as a :class:`~e3_typed_store.errors.StoreError` subclass.

This module is the only one, with the HTTP driver, that imports ``requests``.
"""

from __future__ import annotations

import bisect
import email.utils
import hashlib
import http.client
import logging
import os
import queue
import random
import re
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import NamedTuple, Protocol, runtime_checkable
from urllib.parse import unquote, unquote_to_bytes, urljoin, urlsplit

import requests
import requests.structures
import requests.utils
import urllib3.exceptions
import urllib3.response

from e3_typed_store._fs import create_unnamed, publish, remove_temp, safe_file_name
from e3_typed_store._hashing import Algorithm
from e3_typed_store._progress import ByteProgress
from e3_typed_store._query import host_problem, split_url
from e3_typed_store._redact import hide_credentials
from e3_typed_store._runtime import reset_in_forked_child
from e3_typed_store._watchdog import (
    BodyWatchdog,
    EndlessInformationalError,
    RequestWatchdog,
    WatchedAdapter,
)
from e3_typed_store.errors import (
    DeadlineExceededError,
    DestinationError,
    DownloadError,
    HTTPStatusError,
    IntegrityError,
    StoreError,
)

__all__ = [
    "DIGEST_WORKERS",
    "INLINE_DIGEST_BYTES",
    "MAX_REDIRECTS",
    "SNIPPET_BYTES",
    "Deadline",
    "DigestWorkers",
    "OverlappedDigest",
    "TransferPolicy",
    "backoff_seconds",
    "close_thread_connections",
    "content_disposition_name",
    "download",
    "prepare_get",
    "resource_file_name",
    "retry_after_seconds",
    "tls_read_size",
]

#: Redirects followed for one request before giving up.
MAX_REDIRECTS = 10
#: At most this much of an error response's body is read, for the log.
SNIPPET_BYTES = 256
# What a server sent is quoted in messages up to this many characters.
_SHOWN_CHARACTERS = 200
# A body sent with a Content-Encoding (though none was asked for) may decode
# to at most this many times the bytes received, counted from 64 KiB: one
# layer of gzip or deflate cannot pass 1,032 times, a few layers of them can
# turn a few kilobytes into terabytes.
_MAX_INFLATION = 1100
_INFLATION_FLOOR = 64 << 10

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# One ``; name=value`` parameter of a Content-Disposition header, the value a
# quoted-string or anything up to the next semicolon.
_DISPOSITION_PARAMETER = re.compile(
    r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
# A size has at most this many digits (10**18 bytes is an exabyte); a longer
# number is no size a server can send, and int() refuses those of over 4,300.
_MAX_SIZE_DIGITS = 18
_SIZE = rf"([0-9]{{1,{_MAX_SIZE_DIGITS}}})"
_CONTENT_RANGE = re.compile(
    rf"bytes\s+{_SIZE}-{_SIZE}/(?:{_SIZE}|(\*))", re.IGNORECASE | re.ASCII
)
# The Content-Range of a 416: the size of the whole content, and no range.
_UNSATISFIED_RANGE = re.compile(rf"bytes\s+\*/{_SIZE}", re.IGNORECASE | re.ASCII)
_TEMP_STEM = "e3-typed-store-download"
# Chunks are handed to the digest worker in batches of at least this many
# bytes: every hand-over wakes the worker and moves the GIL between threads,
# which costs more than hashing a network read of a fast connection.
_DIGEST_BATCH_BYTES = 256 << 10
# Batches waiting for the worker: bounds memory to a few batches.
_DIGEST_QUEUE_BATCHES = 4
#: Content up to this size is hashed inline; larger content, by a digest
#: worker from its first byte (see OverlappedDigest). Measured on the
#: benchmark's 2 vCPUs (docs/performance.md), inline was the faster up to
#: 8 MiB (a 1 MiB cold fetch: 1.50x the raw transfer, against 1.57x with the
#: worker from 256 KiB on), the worker from 16 MiB on.
INLINE_DIGEST_BYTES = 8 << 20
# Digest workers kept waiting for the next download (see DigestWorkers).
_IDLE_DIGEST_WORKERS = 4
# Reads of a TLS body (see tls_read_size): the first asks for this many bytes,
# then double while a read takes less than _QUICK_READ seconds and halve while
# it takes more than _SLOW_READ, never below one TLS record.
_FIRST_TLS_READ = 64 << 10
_TLS_RECORD = 16 << 10
_QUICK_READ = 0.05
_SLOW_READ = 0.25
# Seconds spent waiting for the start of an error body, for the log.
_SNIPPET_WAIT = 0.5
# The longest Retry-After honoured, whatever the server says (one day).
_MAX_RETRY_AFTER = 86400.0


@runtime_checkable
class TransferPolicy(Protocol):
    """The limits a download runs under; the HTTP driver's settings satisfy it."""

    @property
    def connect_timeout(self) -> float:
        """Seconds to wait for a connection to be established."""
        ...

    @property
    def read_timeout(self) -> float:
        """Seconds to wait for the next bytes from the server."""
        ...

    @property
    def deadline(self) -> float:
        """Seconds the whole download may take, every attempt included."""
        ...

    @property
    def retries(self) -> int:
        """Attempts made on one URL after the first one fails transiently."""
        ...

    @property
    def backoff_base(self) -> float:
        """Seconds before the first retry; doubled for each next one."""
        ...

    @property
    def backoff_max(self) -> float:
        """The longest wait between two attempts, Retry-After aside."""
        ...

    @property
    def chunk_size(self) -> int:
        """The most bytes read from the network at once."""
        ...


class Deadline:
    """A point in time after which a download must stop.

    :param seconds: how long from now
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Return the seconds left, zero when it has passed."""
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        """Tell whether the deadline has passed."""
        return time.monotonic() >= self._end

    def check(self, url: str) -> None:
        """Raise if the deadline has passed.

        :param url: the URL being fetched, for the error
        :raises DeadlineExceededError: the deadline has passed
        """
        if self.expired():
            raise DeadlineExceededError(url, self.seconds)


def content_disposition_name(header: str) -> str | None:
    """Return the safe file name a Content-Disposition header suggests, if any.

    ``filename*`` (RFC 6266 / RFC 8187: ``UTF-8''percent%20encoded``) is
    preferred to ``filename``; each is used only if :func:`safe_file_name`
    accepts it and it does not start with a dot: a server does not get to
    leave a hidden file (``.bashrc``), as browsers do not let it either.

    :param header: the header's value
    """
    parameters: dict[str, str] = {}
    for match in _DISPOSITION_PARAMETER.finditer(header):
        parameters.setdefault(match.group(1).lower(), match.group(2).strip())
    extended = parameters.get("filename*")
    if extended is not None:
        decoded = _decode_extended_value(_unquote(extended))
        name = _visible_name(decoded) if decoded is not None else None
        if name is not None:
            return name
    plain = parameters.get("filename")
    if plain is not None and (plain.startswith('"') or _is_token(plain)):
        return _visible_name(_unquote(plain))
    return None


def _is_token(value: str) -> bool:
    """Whether an unquoted parameter value is one token: not, say, the
    ``a.bin, attachment`` of two headers joined into one."""
    return not any(character == "," or character.isspace() for character in value)


def _visible_name(candidate: str) -> str | None:
    name = safe_file_name(candidate)
    return None if name is None or name.startswith(".") else name


def resource_file_name(url: str, uid: str) -> str:
    """Return the name a resource gets when the server does not suggest one.

    :param url: the resource URL; its path's percent-decoded base name is used
        when :func:`safe_file_name` accepts it
    :param uid: the resource uid (a hex digest), the name of last resort
    """
    try:
        path = unquote(urlsplit(url).path, errors="strict")
    except (UnicodeDecodeError, ValueError):
        path = ""
    name = safe_file_name(path)
    return name if name is not None else uid


def retry_after_seconds(value: str | None) -> float | None:
    """Return how long a ``Retry-After`` header asks to wait, if it says.

    :param value: the header's value: seconds, or an HTTP date
    :return: seconds (at most a day), or None when absent or unreadable
    """
    if value is None:
        return None
    value = value.strip()
    if _is_decimal(value):
        return min(float(value), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        delay = (when - datetime.now(timezone.utc)).total_seconds()
    except (TypeError, ValueError, OverflowError):
        # Not a date, or one out of range (a zone offset of years, say).
        return None
    return min(max(0.0, delay), _MAX_RETRY_AFTER)


def _is_decimal(value: str) -> bool:
    """Whether *value* is a non-negative integer in ASCII digits.

    ``str.isdigit`` also accepts ``²`` or ``¹``, which ``int`` refuses.
    """
    return value.isascii() and value.isdigit()


def download(
    urls: Sequence[str],
    dest: str,
    *,
    algorithm: Algorithm,
    expected: str,
    default_name: str,
    policy: TransferPolicy,
    progress: bool,
    log: logging.Logger,
) -> str:
    """Download a resource from the first of *urls* that serves it.

    Each URL gets up to ``1 + policy.retries`` attempts while its failures are
    transient (connection errors, timeouts, truncated bodies, 429 and 5xx);
    any other failure, or a digest mismatch, moves on to the next URL. A URL
    whose server asks for a wait (``Retry-After``) is asked again once the
    wait is over, and meanwhile the URLs after it are tried. Bytes
    received from an earlier attempt are kept and the next attempt asks for
    the rest with a ``Range`` request; a server that answers with the whole
    content, or with a range that does not fit, starts the file over.

    :param urls: candidate URLs of the same content, in order
    :param dest: the directory the file is written into
    :param algorithm: the digest algorithm of *expected*
    :param expected: the lower-case hex digest the content must have
    :param default_name: the file name when the server suggests no safe one
    :param policy: timeouts, deadline, retries, backoff and chunk size
    :param progress: draw a progress bar on standard error if it is a terminal
    :param log: where attempts, retries and the digest mismatch are logged
    :return: the path of the verified file, inside *dest*
    :raises DeadlineExceededError: the deadline passed
    :raises IntegrityError: the last URL tried served other content
    :raises HTTPStatusError: the last URL tried answered an error status
    :raises DestinationError: *dest* cannot take the file (a full disk...)
    :raises DownloadError: the last URL tried failed otherwise
    """
    if not urls:
        raise DownloadError("", "no URL to download from")
    if "\0" in dest:  # os calls would raise a bare ValueError
        raise DestinationError(urls[0], dest, "a NUL byte in the path")
    deadline = Deadline(policy.deadline)
    errors: list[StoreError] = []
    session = _SESSIONS.session()
    with _PartFile(
        dest, algorithm, ByteProgress(progress, default_name), urls[0]
    ) as part:
        # Each URL's turn: the first comes first; a URL whose server asked
        # for a wait (Retry-After) goes behind the others until it is over.
        turns = [_Turn(0.0, order, url, 0) for order, url in enumerate(urls)]
        while turns:
            turn = turns.pop(0)
            url, attempt = turn.url, turn.attempt
            shown = hide_credentials(url)  # for the log
            fetched_whole = False  # after resumed content failed its digest
            wait = turn.not_before - time.monotonic()
            if wait >= deadline.remaining():
                log.warning("giving up on %s: its wait would pass the deadline", shown)
                continue
            if wait > 0:
                time.sleep(wait)
            while True:
                try:
                    _fetch(session, url, part, deadline, policy, log)
                    actual = part.finish()
                    if actual != expected and part.spliced and not fetched_whole:
                        # One of the responses resumed may not have sent the
                        # content's bytes: a response of the whole may. Once,
                        # and not counted as a retry.
                        log.warning(
                            "%s: the content put together from several responses "
                            "has the digest %s: fetching it whole",
                            shown,
                            actual,
                        )
                        part.restart()
                        fetched_whole = True
                        continue
                    if actual != expected:
                        log.critical(
                            "wrong sha for resource %s expecting %s got %s",
                            shown,
                            expected,
                            actual,
                        )
                        part.restart()
                        raise IntegrityError(url, expected, actual)
                    return part.commit(part.name or default_name)
                except _TransientError as transient:
                    error = transient.error
                    errors.append(error)
                    # Logged as text: a handler that keeps its records (a
                    # test's, a memory buffer) keeps no error, nor its
                    # traceback and response.
                    if attempt >= policy.retries:
                        log.warning("giving up on %s: %s", shown, str(error))
                        break
                    delay = transient.retry_after
                    if delay is None:
                        delay = backoff_seconds(policy, attempt)
                    if delay >= deadline.remaining():
                        log.warning(
                            "giving up on %s: %s; a retry in %g s would pass "
                            "the deadline",
                            shown,
                            str(error),
                            delay,
                        )
                        break
                    attempt += 1
                    if transient.retry_after is not None and turns:
                        log.warning(
                            "%s; asked to wait %g s: trying the other URLs first",
                            str(error),
                            delay,
                        )
                        later = _Turn(
                            time.monotonic() + delay, turn.order, url, attempt
                        )
                        bisect.insort(turns, later)
                        break
                    log.warning(
                        "%s; retry %d of %d in %g s",
                        str(error),
                        attempt,
                        policy.retries,
                        delay,
                    )
                    time.sleep(delay)
                except (HTTPStatusError, IntegrityError) as exc:
                    errors.append(exc)
                    log.warning("giving up on %s: %s", shown, str(exc))
                    break
                except _UnusableURLError as unusable:
                    errors.append(unusable.error)
                    log.warning("giving up on %s: %s", shown, str(unusable.error))
                    break
    # A server that sent other content says most: it is not hidden behind a
    # later URL's busy answer.
    wrong = [error for error in errors if isinstance(error, IntegrityError)]
    final = wrong[-1] if wrong else errors[-1]
    # The earlier attempts' errors go: this frame lives on in the final one's
    # traceback, and theirs hold their responses' buffers (a program that
    # keeps its failures would keep them all).
    del wrong
    errors.clear()
    raise final


def backoff_seconds(policy: TransferPolicy, attempt: int) -> float:
    """How long to wait before retry *attempt* + 1 when the server said nothing.

    Exponential with equal jitter: the wait is drawn between half and all of
    ``min(backoff_max, backoff_base * 2**attempt)``. Processes that failed
    together (a server restarting under many clients) then come back spread
    over time instead of all at once, and none retries sooner than half the
    exponential wait. (The ``random`` module reseeds in a forked child, so
    forked workers draw differently.)

    :param policy: gives ``backoff_base`` and ``backoff_max``
    :param attempt: how many retries of this URL were made already, from 0
    """
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0**attempt)
    return random.uniform(ceiling / 2, ceiling)


class _Turn(NamedTuple):
    """A URL's next turn at being asked for the content."""

    #: The time.monotonic() before which it is not asked.
    not_before: float
    #: Its place among the URLs given: earlier ones first, at equal times.
    order: int
    url: str
    #: The attempts it has had.
    attempt: int


class _TransientError(Exception):
    """A failure worth retrying on the same URL (never leaves this module)."""

    def __init__(self, error: DownloadError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _UnusableURLError(Exception):
    """A failure of one URL that another URL may not have (never leaves)."""

    def __init__(self, error: DownloadError) -> None:
        super().__init__(str(error))
        self.error = error


def _transient(
    url: str, reason: str, cause: BaseException | None, retry_after: float | None = None
) -> _TransientError:
    error = DownloadError(url, reason)
    error.__cause__ = cause
    return _TransientError(error, retry_after)


def _unusable(url: str, reason: str, cause: BaseException | None) -> _UnusableURLError:
    error = DownloadError(url, reason)
    error.__cause__ = cause
    return _UnusableURLError(error)


class OverlappedDigest:
    """A digest computed as the content is read: by a worker thread, while the
    caller goes on reading, past :data:`INLINE_DIGEST_BYTES`.

    hashlib releases the GIL on large buffers, so the hash of one chunk runs
    while the next is received and written. The queue is bounded: memory stays
    at a few chunks however fast the network is. Content of at most
    :data:`INLINE_DIGEST_BYTES` is hashed inline, as it is read: a body that
    small is often all received before the first read returns, so a worker
    has little left to overlap, and waking it, on a machine whose cores the
    server shares, cost more than hashing inline. Larger content goes to a
    worker from its first byte (see :meth:`expect`); content of unknown size,
    after its first :data:`INLINE_DIGEST_BYTES`. The worker comes from
    :data:`DIGEST_WORKERS`.
    """

    def __init__(self, algorithm: Algorithm) -> None:
        self._hash = hashlib.new(algorithm)
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(
            _DIGEST_QUEUE_BATCHES
        )
        self._failure: BaseException | None = None
        self._inline_left = INLINE_DIGEST_BYTES
        # Bytes of the content not given yet, when its size is known: the
        # last batch goes to the worker at once, to be hashed while the
        # caller writes it, rather than when the caller closes the digest.
        self._unseen: int | None = None
        self._done: threading.Event | None = None
        self._closed = False
        self._batch: list[bytes] = []
        self._batch_size = 0

    def expect(self, total: int | None) -> None:
        """Say how many bytes are coming, before the first one.

        :param total: the size of the content, None if unknown
        """
        if total is not None:
            self._inline_left = total if total <= INLINE_DIGEST_BYTES else 0
        self._unseen = total

    def drain(self) -> None:
        """Hash the queued chunks until the end mark (run by a worker thread)."""
        while (batch := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    for chunk in batch:
                        self._hash.update(chunk)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    # Keep draining so that update() never blocks forever.
                    self._failure = exc
        if self._done is not None:
            self._done.set()

    def update(self, chunk: bytes) -> None:
        """Hash *chunk* after the chunks given before.

        :param chunk: the next bytes of the content
        """
        if self._unseen is not None:
            self._unseen -= len(chunk)
        if self._done is None:
            if self._inline_left > 0:
                self._inline_left -= len(chunk)
                self._hash.update(chunk)
                return
            self._done = threading.Event()
            try:
                DIGEST_WORKERS.assign(self)
            except BaseException:
                # No worker has it (Ctrl-C while one was starting, say):
                # close() must not wait for one.
                self._done = None
                raise
            # The first chunk alone, at once: the worker starts hashing
            # while the first batch fills.
            self._queue.put([chunk])
            return
        self._batch.append(chunk)
        self._batch_size += len(chunk)
        last = self._unseen is not None and self._unseen <= 0
        if last or self._batch_size >= _DIGEST_BATCH_BYTES:
            self._hand_over()

    def _hand_over(self) -> None:
        self._queue.put(self._batch)
        self._batch = []
        self._batch_size = 0

    def close(self) -> None:
        """Wait until the worker, if any, has hashed what it was given."""
        if not self._closed:
            self._closed = True
            if self._done is not None:
                if self._batch:
                    self._hand_over()
                self._queue.put(None)
                self._done.wait()

    def hexdigest(self) -> str:
        """Return the lower-case hex digest of everything given; frees the worker."""
        self.close()
        if self._failure is not None:
            raise self._failure
        return self._hash.hexdigest()


class DigestWorkers:
    """Threads that drain digests, kept between downloads.

    Starting a thread costs about as much as hashing 100 KiB, so a worker that
    finished a digest waits for the next one; at most
    :data:`_IDLE_DIGEST_WORKERS` wait, the others end. Each download has a
    worker of its own while it runs: concurrent downloads hash in parallel.
    After a fork the child starts with none (threads do not survive it).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every worker (also in a forked child)."""
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[OverlappedDigest]] = []

    def assign(self, digest: OverlappedDigest) -> None:
        """Have a worker run ``digest.drain()``, an idle one if there is one."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue[OverlappedDigest]()
            threading.Thread(
                target=self._serve,
                args=(inbox, self._lock, self._idle),
                name="e3-typed-store-digest",
                daemon=True,
            ).start()
        inbox.put(digest)

    @staticmethod
    def _serve(
        inbox: queue.SimpleQueue[OverlappedDigest],
        lock: threading.Lock,
        idle: list[queue.SimpleQueue[OverlappedDigest]],
    ) -> None:
        while True:
            inbox.get().drain()
            with lock:
                if len(idle) >= _IDLE_DIGEST_WORKERS:
                    return
                idle.append(inbox)


DIGEST_WORKERS = DigestWorkers()
reset_in_forked_child(DIGEST_WORKERS.reset)


class _ThreadSessions:
    """A ``requests.Session`` per thread, kept from one download to the next.

    Its connection pools keep a connection to a server open once a response
    was read to its end, so the next download from that server skips the TCP
    (and TLS) handshake; urllib3 checks that a pooled connection is still
    open before it reuses it. One session per thread, because a session is
    not meant to be shared between threads; none survives a fork, because a
    child must not write on its parent's sockets. The session's cookie jar
    stays empty: requests are sent through the adapter, which never stores
    the cookies of a response in it.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every session (also in a forked child)."""
        self._local = threading.local()

    def session(self) -> requests.Session:
        """The calling thread's session, made on first use."""
        session = getattr(self._local, "session", None)
        if isinstance(session, requests.Session):
            return session
        made = requests.Session()
        # One adapter for both schemes, whose connections a RequestWatchdog
        # can shut: the deadline then bounds the wait for a response's head.
        adapter = WatchedAdapter()
        made.mount("http://", adapter)
        made.mount("https://", adapter)
        self._local.session = made
        return made

    def close(self) -> None:
        """Close the calling thread's session and its connections, if any;
        the next download makes a new one."""
        session = getattr(self._local, "session", None)
        if isinstance(session, requests.Session):
            del self._local.session
            session.close()


_SESSIONS = _ThreadSessions()
reset_in_forked_child(_SESSIONS.reset)


def close_thread_connections() -> None:
    """Close the connections the calling thread keeps open to servers."""
    _SESSIONS.close()


class _PartFile:
    """The temporary file a download streams into, and the digest of its bytes.

    It is made in the destination directory with no name where the system
    allows (:func:`~e3_typed_store._fs.create_unnamed`: a process killed
    meanwhile leaves nothing there), under a name unique to the process and the
    call otherwise, so that publishing it is atomic; a named one is removed on
    every path that does not commit it.
    """

    def __init__(
        self, dest: str, algorithm: Algorithm, progress: ByteProgress, url: str
    ) -> None:
        self._url = url
        self._algorithm: Algorithm = algorithm
        self._progress = progress
        self._dest = dest
        self._digest = OverlappedDigest(algorithm)
        try:
            try:
                self._fd, self._temp = create_unnamed(dest, _TEMP_STEM, os.O_WRONLY)
            except FileNotFoundError:
                # The store makes dest before a download; a driver called
                # directly may be given one that does not exist yet.
                os.makedirs(dest, exist_ok=True)
                self._fd, self._temp = create_unnamed(dest, _TEMP_STEM, os.O_WRONLY)
        except OSError as exc:
            self._digest.close()
            raise DestinationError(
                url, dest, f"cannot write into {dest}: {exc}"
            ) from exc
        # Buffered writes through a file object that leaves the descriptor to
        # commit() and __exit__: publishing an unnamed file needs it open.
        self._file = open(self._fd, "wb", closefd=False)
        #: Bytes of the content held so far.
        self.size = 0
        #: The size of the whole content when a response said it.
        self.total: int | None = None
        #: A strong ETag or a Last-Modified date, for ``If-Range``.
        self.validator: str | None = None
        #: The safe name the server suggested for the content, if any.
        self.name: str | None = None
        #: Whether what is held may be completed with a Range request.
        self.resumable = False
        #: Whether what is held came from more than one response.
        self.spliced = False
        self._committed = False

    def __enter__(self) -> _PartFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.close()
        self._digest.close()
        if self._committed:
            return
        try:
            self._file.close()
        except OSError:
            # Its buffer could not be flushed (a full disk): the file is
            # dropped below all the same, and the error that brought us here
            # is the one the caller gets.
            pass
        os.close(self._fd)
        remove_temp(self._temp)

    def begin(
        self,
        total: int | None,
        name: str | None,
        validator: str | None,
        resumable: bool,
    ) -> None:
        """Record what a response starting the content from byte 0 says of it.

        :param total: the size of the content, if known
        :param name: the safe name the server suggests, if any
        :param validator: the response's strong ETag or Last-Modified
        :param resumable: whether a dropped transfer may resume with Range
        """
        self.total = total
        self.name = name
        self.validator = validator
        self.resumable = resumable
        self._digest.expect(total)
        self._progress.start(total)

    def resume(self, total: int | None) -> None:
        """Go on counting after a Range request was answered as hoped.

        :param total: the size of the content the answer names, if any: a
            first response that gave none leaves it to this one, so that an
            answer with less than the rest is not taken for the end
        """
        self.spliced = True
        if self.total is None:
            self.total = total
        self._progress.start(self.total, self.size)

    def write(self, chunk: bytes) -> None:
        """Append *chunk* to the file and to the digest.

        :param chunk: the next bytes of the content
        :raises DestinationError: the file cannot be written
        """
        self._digest.update(chunk)
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self.size += len(chunk)
        self._progress.advance(len(chunk))

    def _unwritable(self, exc: OSError) -> DestinationError:
        return DestinationError(
            self._url, self._dest, f"cannot write into {self._dest}: {exc}"
        )

    def restart(self) -> None:
        """Drop what was received: the next response starts from byte 0.

        :raises DestinationError: the file cannot be truncated
        """
        self._digest.close()
        self._digest = OverlappedDigest(self._algorithm)
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self.size = 0
        self.total = None
        self.validator = None
        self.name = None
        self.resumable = False
        self.spliced = False

    def finish(self) -> str:
        """Flush the file and return the digest of everything written.

        :raises DestinationError: the file cannot be written
        """
        try:
            self._file.flush()
        except OSError as exc:
            raise self._unwritable(exc) from exc
        return self._digest.hexdigest()

    def commit(self, name: str) -> str:
        """Move the file to *name* in the destination directory.

        :param name: a safe base name
        :return: the final path
        :raises DestinationError: the file cannot be moved there
        """
        target = os.path.join(self._dest, name)
        try:
            self._file.close()  # flushes; the descriptor stays open
        except OSError as exc:
            raise self._unwritable(exc) from exc
        self._committed = True  # publish() closes the descriptor, come what may
        try:
            publish(self._fd, self._temp, target)
        except OSError as exc:
            remove_temp(self._temp)
            raise DestinationError(
                self._url, self._dest, f"cannot move the download to {target}: {exc}"
            ) from exc
        self._progress.close()
        return target


def _fetch(
    session: requests.Session,
    url: str,
    part: _PartFile,
    deadline: Deadline,
    policy: TransferPolicy,
    log: logging.Logger,
) -> None:
    """Make one attempt at getting the rest of the content from *url*."""
    try:
        response = _open(session, url, part, deadline, policy, log)
    except _HeldWholeError:
        return
    with response:
        final_url = response.url or url
        encoded = _start_body(response, final_url, part, log)
        _stream_body(response, final_url, part, deadline, policy, encoded, log)


def _open(
    session: requests.Session,
    url: str,
    part: _PartFile,
    deadline: Deadline,
    policy: TransferPolicy,
    log: logging.Logger,
) -> requests.Response:
    """Send the GET (with Range when resuming), following redirects by hand.

    :return: a 2xx response whose body is still unread; the caller closes it
    """
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        deadline.check(current)
        headers = {"Accept-Encoding": "identity"}
        if part.size > 0 and part.resumable:
            headers["Range"] = f"bytes={part.size}-"
            if part.validator is not None:
                headers["If-Range"] = part.validator
        remaining = deadline.remaining()
        timeout = (
            min(policy.connect_timeout, remaining),
            min(policy.read_timeout, remaining),
        )
        log.debug("GET %s %s", hide_credentials(current), headers.get("Range", ""))
        try:
            response = _send_again_if_stale(
                session, current, headers, timeout, deadline
            )
        except requests.exceptions.SSLError as exc:
            raise _unusable(current, f"TLS error: {exc}", exc) from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _failed_request(current, url, deadline, exc) from exc
        except requests.RequestException as exc:
            # Not a network failure: an invalid URL or header, for one.
            raise _unusable(current, f"request failed: {exc}", exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _failed_request(current, url, deadline, exc) from exc
        status = response.status_code
        if 200 <= status < 300:
            return response
        with response:
            if status in _REDIRECT_STATUSES and "Location" in response.headers:
                current = _redirect_target(current, response.headers["Location"])
                continue
            if status == 416 and part.size > 0:
                whole = _unsatisfied_range_total(response.headers.get("Content-Range"))
                if whole == part.size and part.total in (None, whole):
                    # Every byte came before the connection dropped (a body
                    # of unknown size cut at its very end). Taken as content
                    # put together from several responses: a wrong digest
                    # fetches it whole once.
                    log.info(
                        "%s has all %d bytes of the content already",
                        hide_credentials(current),
                        whole,
                    )
                    part.resume(whole)
                    raise _HeldWholeError
            snippet = _snippet(response, deadline)
            log.warning(
                "GET %s: HTTP %d %s", hide_credentials(current), status, snippet
            )
            if status == 429 or 500 <= status < 600:
                error = HTTPStatusError(current, status)
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                raise _TransientError(error, wait)
            if status == 416 and part.size > 0:
                part.restart()
                raise _transient(
                    current, "range not satisfiable: starting over", None, 0.0
                )
            raise HTTPStatusError(current, status)
    raise _unusable(url, f"more than {MAX_REDIRECTS} redirects", None)


def _send_again_if_stale(
    session: requests.Session,
    url: str,
    headers: Mapping[str, str],
    timeout: tuple[float, float],
    deadline: Deadline,
) -> requests.Response:
    """Send one GET; once more if a kept connection failed it before any answer.

    A kept connection can be closed by the server (its idle timeout) just as
    it is reused: the request then fails before a byte of response, through
    no fault of the server. Or it holds bytes an earlier answer left (a body
    longer than its ``Content-Length``), read as an answer that is not HTTP.
    Either way the request is sent again at once on a new connection, without
    counting as an attempt or waiting for a backoff. A server that does so
    on every connection fails the second send too.
    """
    try:
        return _send(session, url, headers, timeout, deadline)
    except requests.ConnectionError as exc:
        if not _closed_before_response(exc):
            raise
    except _LeftoversError:
        pass  # the failed connection is closed: the pool opens a new one
    try:
        return _send(session, url, headers, timeout, deadline)
    except _LeftoversError as again:
        raise again.error from again.error.__cause__


class _HeldWholeError(Exception):
    """A Range request was refused (416) because what is held is all there is."""


def _unsatisfied_range_total(value: str | None) -> int | None:
    """The size of the content that a 416's ``Content-Range: bytes */N`` gives."""
    if value is None:
        return None
    match = _UNSATISFIED_RANGE.fullmatch(value.strip())
    return None if match is None else int(match.group(1))


class _LeftoversError(Exception):
    """An answer that is not HTTP came on a kept connection: maybe what an
    earlier answer left on it."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        #: What the request raised.
        self.error = error


def _not_http(exc: BaseException) -> http.client.HTTPException | None:
    """The cause of *exc* if it is an answer that is not HTTP, else None.

    A status line that is not one, a header line past http.client's limit,
    too many headers. Not a connection closed before any answer
    (:class:`http.client.RemoteDisconnected`, a kind of bad status line).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, http.client.RemoteDisconnected):
            return None
        if isinstance(
            current,
            (
                http.client.BadStatusLine,
                http.client.LineTooLong,
                http.client.UnknownProtocol,
                EndlessInformationalError,
            ),
        ):
            return current
        if isinstance(current, http.client.HTTPException) and "headers" in str(current):
            return current  # "got more than 100 headers"
        nested = [arg for arg in current.args if isinstance(arg, BaseException)]
        current = nested[0] if nested else current.__cause__ or current.__context__
    return None


def _closed_before_response(exc: requests.ConnectionError) -> bool:
    reason: object = exc.args[0] if exc.args else None
    if not isinstance(reason, urllib3.exceptions.ProtocolError):
        return False
    cause: object = reason.args[1] if len(reason.args) > 1 else None
    return isinstance(
        cause, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
    )


def _send(
    session: requests.Session,
    url: str,
    headers: Mapping[str, str],
    timeout: tuple[float, float],
    deadline: Deadline,
) -> requests.Response:
    """Send one GET through the session's adapter, with the session's settings.

    The exchange, up to the end of the response's head, is cut at the
    deadline (:class:`RequestWatchdog`): a server trickling its head a byte at
    a time cannot hold it beyond.

    Not ``session.get(..., allow_redirects=False)``: requests then still
    reads a redirect's whole body into memory, whatever its size.
    """
    try:
        prepared = prepare_get(session, url, headers)
    except UnicodeError:
        # Basic authentication encodes the user name and password (the URL's,
        # or a netrc file's for its host) in Latin-1: one that is not (a
        # redirect's, say) cannot be sent. The error's own text would hold
        # the password: left out.
        raise _unusable(
            url,
            "the user name or password for it (in the URL or a netrc file) is not"
            " Latin-1 once percent-decoded (HTTP basic authentication sends them so)",
            None,
        ) from None
    target = prepared.url if prepared.url is not None else url
    if _no_proxy_settings(session):
        # What merge_environment_settings returns then, without its two
        # passes over the whole environment.
        proxies: MutableMapping[str, str] = {}
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get(
            "CURL_CA_BUNDLE"
        )
        verify: bool | str = bundle or (
            session.verify if session.verify is not None else True
        )
        cert = session.cert
    else:
        settings = session.merge_environment_settings(target, {}, True, None, None)
        proxies = settings["proxies"]
        verify = settings["verify"] if settings["verify"] is not None else True
        cert = settings["cert"]
    adapter = session.get_adapter(target)
    with RequestWatchdog(deadline.remaining()) as watchdog:
        try:
            response = adapter.send(
                prepared,
                stream=True,
                timeout=timeout,
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
        except (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as exc:
            if watchdog.fired:
                raise DeadlineExceededError(url, deadline.seconds) from exc
            answer = _not_http(exc)
            if answer is not None and watchdog.fresh:
                # A new connection answered in something else than HTTP: the
                # service is not an HTTP server, and asking again will not
                # change that.
                raise _unusable(
                    url, f"the answer is not HTTP: {_shown(str(answer))}", exc
                ) from exc
            if answer is not None:
                # On a kept connection it may be the leftovers of an earlier
                # answer: sent again at once (_send_again_if_stale).
                raise _LeftoversError(exc) from exc
            raise
    if watchdog.fired:  # the head came in just as the socket was being shut
        response.close()
        raise DeadlineExceededError(url, deadline.seconds)
    return response


@runtime_checkable
class _Preparing(Protocol):
    """The part of ``requests.PreparedRequest`` used here, with its types
    (requests' stubs leave ``prepare``'s parameters untyped)."""

    def prepare(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str | bytes],
        *,
        auth: tuple[str, str] | None,
    ) -> None:
        """Fill the request in, as requests does."""


def prepare_get(
    session: requests.Session, url: str, headers: Mapping[str, str]
) -> requests.PreparedRequest:
    """Return what ``session.prepare_request`` makes of a GET of *url*.

    The same request, at 40 % of the cost: the merges that cannot change
    anything for this module's sessions are left out. Their cookie jar stays
    empty (see :class:`_ThreadSessions`), and they have no parameters, hooks
    or authentication of their own. What the environment gives is kept: the
    credentials of a netrc file, as requests finds it, when the session trusts
    the environment.

    :param headers: sent on top of the session's, which they override
    :raises requests.RequestException: *url* or a header is invalid
    """
    prepared = requests.PreparedRequest()
    merged = requests.structures.CaseInsensitiveDict(session.headers)
    merged.update(headers)
    auth = requests.utils.get_netrc_auth(url) if session.trust_env else None
    _typed(prepared).prepare("GET", url, merged, auth=auth)
    return prepared


def _typed(request: requests.PreparedRequest) -> _Preparing:
    return request  # checked structurally: PreparedRequest is a _Preparing


def _no_proxy_settings(session: requests.Session) -> bool:
    """Tell whether no proxy can apply: no ``*_proxy`` variable, none set.

    Where the standard library reads proxies from the environment only (not
    on macOS or Windows, which also ask the system), no variable whose name
    ends in ``_proxy``, in any case, means no proxy for any URL.
    """
    if sys.platform == "darwin" or os.name == "nt":
        return False
    if not session.trust_env:
        return False  # requests then reads no variable, CA bundles included
    if session.proxies:
        return False
    return not any(name[-6:].lower() == "_proxy" for name in os.environ)


def _failed_request(
    current: str, url: str, deadline: Deadline, exc: BaseException
) -> Exception:
    if deadline.expired():
        return DeadlineExceededError(url, deadline.seconds)
    return _transient(current, f"request failed: {exc}", exc)


def _redirect_target(current: str, location: str) -> str:
    location = _utf8_header(location).strip()
    if not location.isprintable():
        raise _unusable(
            current, f"redirect to {_shown(location)} refused: control characters", None
        )
    try:
        absolute = bool(urlsplit(location).scheme)
        # urljoin would take "http:///x" as relative: an absolute Location
        # must name its own host.
        target = location if absolute else urljoin(current, location)
        parts = split_url(target)
    except ValueError as exc:
        raise _unusable(
            current, f"bad redirect to {_shown(location)}: {exc}", exc
        ) from exc
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise _unusable(current, f"redirect to {_shown(location)} refused", None)
    # A name no request can be made to (a..b): refused now, not retried as a
    # connection that failed.
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise _unusable(
            current, f"redirect to {_shown(location)} refused: {problem}", None
        )
    return target


def _utf8_header(value: str) -> str:
    """*value* as UTF-8 where its bytes are that: http.client decodes every
    header as Latin-1, and a server's raw UTF-8 path would come out garbled."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _shown(text: str) -> str:
    """*text* quoted for a message or a log line: escaped and cut short."""
    if len(text) > _SHOWN_CHARACTERS:
        return f"{text[:_SHOWN_CHARACTERS]!r}..."
    return repr(text)


def _snippet(response: requests.Response, deadline: Deadline) -> str:
    """Return the start of an error body, read without reading the rest."""
    raw: urllib3.response.HTTPResponse = response.raw
    try:
        # A server that sends an error status and then nothing costs little.
        with BodyWatchdog(raw, min(_SNIPPET_WAIT, deadline.remaining())):
            data = raw.read1(SNIPPET_BYTES, decode_content=False)
    except (urllib3.exceptions.HTTPError, OSError, ValueError):
        return ""
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _start_body(
    response: requests.Response, url: str, part: _PartFile, log: logging.Logger
) -> bool:
    """Decide whether *response* continues what *part* holds or starts over.

    :return: whether the body has a Content-Encoding to decode
    """
    headers = response.headers
    encoded = headers.get("Content-Encoding", "identity").strip().lower() not in {
        "",
        "identity",
    }
    if response.status_code == 206:
        span = _content_range(headers.get("Content-Range"))
        length = _framed_length(response)
        fits = (
            span is not None
            and not encoded
            and span[0] == part.size
            and (length is None or length == span[1] - span[0] + 1)
            and (span[2] is None or span[1] < span[2])
            and (part.total is None or span[2] is None or span[2] == part.total)
        )
        if not fits:
            part.restart()
            raise _transient(
                url,
                f"unusable partial response (Content-Range "
                f"{headers.get('Content-Range')!r}): starting over",
                None,
                0.0,
            )
        if part.size == 0:
            total = span[2] if span is not None else None
            part.begin(total, _suggested_name(headers), _validator(headers), True)
        else:
            log.info("resuming %s at byte %d", hide_credentials(url), part.size)
            part.resume(span[2] if span is not None else None)
        return False  # a range of encoded content never fits
    if part.size > 0:
        log.info(
            "%s sent the whole content again: starting over", hide_credentials(url)
        )
        part.restart()
    total = None if encoded else _framed_length(response)
    part.begin(total, _suggested_name(headers), _validator(headers), not encoded)
    return encoded


def _framed_length(response: requests.Response) -> int | None:
    """The body's length as its framing gives it; None when unsaid.

    A chunked body's length is its chunks': its Content-Length, if any, is
    ignored, as urllib3 reading it does (Transfer-Encoding overrides
    Content-Length, RFC 9112 section 6.3), also when ``chunked`` is said
    twice.
    """
    raw: urllib3.response.HTTPResponse = response.raw
    if raw.chunked:
        return None
    return _int_header(response.headers, "Content-Length")


def _stream_body(
    response: requests.Response,
    url: str,
    part: _PartFile,
    deadline: Deadline,
    policy: TransferPolicy,
    encoded: bool,
    log: logging.Logger,
) -> None:
    """Copy the body into *part* within the deadline: a network read at a time
    over plain TCP, a block of up to ``policy.chunk_size`` at a time over TLS.

    :param encoded: decode the body's Content-Encoding (urllib3's decoding
        path, with its buffer copy, is skipped for the common identity body)
    """
    raw: urllib3.response.HTTPResponse = response.raw
    # Over plain TCP, read1: one network read at most, so that every byte
    # received is kept when the connection drops (a resumed download goes on
    # from there). A TLS socket gives one record (16 KiB) per read, and a
    # Python round per record (a file write, a digest hand-over) took the
    # download of 64 MiB to 1.9x the time of requests' own loop: there, read
    # fills a block in C, sized to take a fraction of a second (see
    # tls_read_size), and a connection lost in the middle of one loses at most
    # that block (asked for again on resuming).
    tls = urlsplit(url).scheme.lower() == "https"
    size = min(_FIRST_TLS_READ, policy.chunk_size)
    with BodyWatchdog(raw, deadline.remaining()) as watchdog:
        while True:
            deadline.check(url)
            try:
                if tls:
                    started = time.monotonic()
                    chunk = raw.read(size, decode_content=encoded)
                    took = time.monotonic() - started
                    size = tls_read_size(size, took, policy.chunk_size)
                else:
                    chunk = raw.read1(policy.chunk_size, decode_content=encoded)
            except urllib3.exceptions.DecodeError as exc:
                # The bytes came; they are not what their encoding says.
                raise _unusable(
                    url, f"the body's Content-Encoding cannot be decoded: {exc}", exc
                ) from exc
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if watchdog.fired or deadline.expired():
                    raise DeadlineExceededError(url, deadline.seconds) from exc
                raise _transient(
                    url, f"connection lost after {part.size} bytes: {exc}", exc
                ) from exc
            if not chunk:
                break
            if part.total is not None and part.size + len(chunk) > part.total:
                # Past the end of the content (a 206 whose body runs on past
                # its Content-Range): the rest is not the content's.
                part.write(chunk[: part.total - part.size])
                log.warning(
                    "%s sent more than the %d bytes of the content",
                    hide_credentials(url),
                    part.total,
                )
                break
            if encoded and part.size + len(chunk) > _inflated_limit(raw.tell()):
                raise _unusable(
                    url,
                    f"the body decodes to over {_MAX_INFLATION} times the "
                    f"{raw.tell()} bytes received: a compression bomb",
                    None,
                )
            part.write(chunk)
    if watchdog.fired:  # a body without a length ends as the socket is shut
        raise DeadlineExceededError(url, deadline.seconds)
    if part.total is not None and part.size < part.total:
        raise _transient(url, f"body ended at byte {part.size} of {part.total}", None)


def _inflated_limit(received: int) -> int:
    """The most bytes a body of *received* encoded bytes may decode to."""
    return _MAX_INFLATION * max(received, _INFLATION_FLOOR)


def tls_read_size(size: int, took: float, largest: int) -> int:
    """The size of the next read of a TLS body, after one of *size* bytes.

    Doubled when the read took less than :data:`_QUICK_READ` seconds, up to
    *largest* (the policy's chunk size); halved when it took more than
    :data:`_SLOW_READ`, down to one TLS record. On a fast link the reads soon
    fill whole chunks; on a slow one each still ends within a fraction of a
    second, so that the progress shown moves and a dropped connection loses
    little.

    :param size: the size of the read just made
    :param took: the seconds it took
    :param largest: the most bytes a read may ask for
    """
    if took < _QUICK_READ:
        return min(size * 2, largest)
    if took > _SLOW_READ:
        return max(size // 2, min(_TLS_RECORD, largest))
    return size


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    if value is None:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(4) else int(match.group(3))
    if last < first:
        return None
    return first, last, total


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not _is_decimal(value) or len(value) > _MAX_SIZE_DIGITS:
        return None
    return int(value)


def _validator(headers: Mapping[str, str]) -> str | None:
    etag = headers.get("ETag")
    if etag is not None and not etag.strip().startswith("W/"):
        return etag.strip()
    return headers.get("Last-Modified")


def _suggested_name(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Content-Disposition")
    return content_disposition_name(_utf8_header(value)) if value is not None else None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _decode_extended_value(value: str) -> str | None:
    """Decode an RFC 8187 ``charset'language'percent-encoded`` value."""
    pieces = value.split("'", 2)
    if len(pieces) != 3:
        return None
    charset = pieces[0].strip().lower()
    if charset not in {"utf-8", "iso-8859-1"}:
        return None
    try:
        return unquote_to_bytes(pieces[2]).decode(charset)
    except UnicodeDecodeError:
        return None
