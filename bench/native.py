"""The native bound: the cold fetch's design in C, built for the run.

``native/fetch_bound.c`` receives a body and writes it to a file while a
second thread hashes it with OpenSSL, as this library's digest worker does,
with no Python, HTTP library or cache in the way; or, in its inline mode, it
hashes each block itself once written, with no second thread (this library
hashes bodies of up to 8 MiB in its reading thread too). Timed in the same
run, it says what any implementation of that design reaches on this machine, so a
missed target can be told apart from a slow implementation. Its raw mode (no
hash) checks the other way that the Python raw transfer, the denominator of
the cold-fetch ratios, is not slower than the machine.

It needs a C compiler and OpenSSL's headers (Debian: ``gcc``, ``libssl-dev``);
without them its rows say so and the run goes on.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

__all__ = [
    "NATIVE_FETCH",
    "NATIVE_INLINE",
    "NATIVE_RAW",
    "SOURCE",
    "Mode",
    "NativeClient",
    "NativeUnavailableError",
    "build",
    "start",
]

NATIVE_RAW = "native raw transfer (C, no hash)"
NATIVE_FETCH = "native overlapped fetch (C, OpenSSL sha256 thread)"
NATIVE_INLINE = "native inline fetch (C, OpenSSL sha256 in the reading thread)"
# What the bound does with a body: nothing more, hash it on a second thread,
# hash it in the thread that reads it.
Mode = Literal["raw", "sha256", "inline"]
SOURCE = Path(__file__).resolve().parent / "native" / "fetch_bound.c"
_BUILD_SECONDS = 120
_ANSWER_SECONDS = 120


class NativeUnavailableError(Exception):
    """The native bound cannot be built or run here; the message says why."""


def build(directory: str, compiler: str | None = None) -> str:
    """Compile the bound into *directory* and return the executable's path.

    :param compiler: the C compiler; default ``cc``, else ``gcc``, on the PATH
    :raises NativeUnavailableError: no compiler, or the build failed (missing
        OpenSSL headers are named as such)
    """
    compiler = compiler or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise NativeUnavailableError("no C compiler (cc or gcc) on the PATH")
    executable = os.path.join(directory, "fetch_bound")
    try:
        done = subprocess.run(
            [compiler, "-O2", "-pthread", "-o", executable, str(SOURCE), "-lcrypto"],
            capture_output=True,
            text=True,
            timeout=_BUILD_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeUnavailableError(f"cannot run {compiler}: {exc}") from exc
    if done.returncode != 0:
        if "openssl/evp.h" in done.stderr:
            raise NativeUnavailableError("OpenSSL headers missing (libssl-dev)")
        last = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise NativeUnavailableError(f"{compiler} failed: {last[0]}")
    return executable


class NativeClient:
    """A running bound, keeping its connection to one server between requests."""

    def __init__(
        self, executable: str, base_url: str, answer_seconds: float = _ANSWER_SECONDS
    ) -> None:
        """Start the bound.

        :param answer_seconds: how long a request may take before the bound is
            killed (a stalled server); every later request then fails
        :raises OSError: the executable cannot be run (a ``noexec`` mount...)
        """
        port = urlsplit(base_url).port
        if port is None:
            raise NativeUnavailableError(f"no port in {base_url}")
        self._base = base_url
        self._answer_seconds = answer_seconds
        self._requests = 0
        self._pending = b""  # what was read past the last answer's line
        self._process = subprocess.Popen(
            [executable, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # answers are read from the pipe itself, with a deadline
        )

    def transfer(self, url: str, out: str, mode: Mode) -> tuple[float, str | None]:
        """GET *url* into the file *out*; return (seconds, hex digest or None).

        :param mode: ``raw``: no hash; ``sha256``: a SHA-256 on a second
            thread; ``inline``: a SHA-256 in the thread that reads
        :raises RuntimeError: the bound reported an error, answered another
            request, took too long (it is then stopped), or stopped
        """
        if not url.startswith(self._base + "/"):
            raise ValueError(f"{url} is not served at {self._base}")
        path = urlsplit(url).path
        if any(c.isspace() for c in path + out):
            raise ValueError(f"white space in {path!r} or {out!r}")
        self._requests += 1
        request = str(self._requests)
        line = f"{request} {mode} {path} {out}\n"
        stdin = self._process.stdin
        if stdin is None:
            raise RuntimeError("the native bound has no pipes")
        try:
            stdin.write(os.fsencode(line))
        except BrokenPipeError as exc:
            raise RuntimeError(f"the native bound stopped: {self._stopped()}") from exc
        answer = self._answer().split()
        if answer[:1] != [request]:
            raise RuntimeError(f"the native bound answered another request: {answer}")
        if answer[1:2] != ["ok"] or len(answer) != 4:
            raise RuntimeError(f"the native bound: {' '.join(answer[1:])}")
        return float(answer[2]), None if answer[3] == "-" else answer[3]

    def _answer(self) -> str:
        """The next line the bound writes, waiting at most ``answer_seconds``."""
        stdout = self._process.stdout
        if stdout is None:
            raise RuntimeError("the native bound has no pipes")
        deadline = time.monotonic() + self._answer_seconds
        with selectors.DefaultSelector() as waiting:
            waiting.register(stdout, selectors.EVENT_READ)
            while b"\n" not in self._pending:
                if not waiting.select(max(0.0, deadline - time.monotonic())):
                    self._process.kill()
                    self._process.wait()
                    raise RuntimeError(
                        f"the native bound took over {self._answer_seconds} s"
                    )
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"the native bound stopped: {self._stopped()}")
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8", "replace")

    def _stopped(self) -> str:
        """How the bound ended (it has, or is ending: its pipes are closed)."""
        try:
            return f"exit status {self._process.wait(timeout=10)}"
        except subprocess.TimeoutExpired:
            return "still running"

    def close(self) -> None:
        """Stop the bound (it ends at the end of its input)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=_ANSWER_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def start(
    directory: str, base_url: str, compiler: str | None = None
) -> NativeClient | str:
    """Build and start the bound for the server at *base_url*.

    :param directory: where the executable is built (not on a ``noexec``
        mount: a scratch directory in ``/dev/shm`` may be one)
    :param compiler: as for :func:`build`
    :return: the running bound, or why it is not there (for its rows)
    """
    try:
        return NativeClient(build(directory, compiler), base_url)
    except NativeUnavailableError as exc:
        return f"skipped: {exc}"
    except OSError as exc:
        return f"skipped: cannot run the native bound: {exc}"
