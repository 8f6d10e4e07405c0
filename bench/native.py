"""The native bound: the cold fetch's design in C, built for the run.

``native/fetch_bound.c`` receives a body and writes it to a file while a
second thread hashes it with OpenSSL, as this library's digest worker does,
with no Python, HTTP library or cache in the way. Timed in the same run, it
says what any implementation of that design reaches on this machine, so a
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
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "NATIVE_FETCH",
    "NATIVE_RAW",
    "SOURCE",
    "NativeClient",
    "NativeUnavailableError",
    "build",
    "start",
]

NATIVE_RAW = "native raw transfer (C, no hash)"
NATIVE_FETCH = "native overlapped fetch (C, OpenSSL sha256 thread)"
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
        """
        port = urlsplit(base_url).port
        if port is None:
            raise NativeUnavailableError(f"no port in {base_url}")
        self._base = base_url
        self._answer_seconds = answer_seconds
        self._process = subprocess.Popen(
            [executable, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def transfer(self, url: str, out: str, hashed: bool) -> tuple[float, str | None]:
        """GET *url* into the file *out*; return (seconds, hex digest or None).

        :param hashed: hash the body with SHA-256 on a second thread
        :raises RuntimeError: the bound reported an error, or stopped
        """
        if not url.startswith(self._base + "/"):
            raise ValueError(f"{url} is not served at {self._base}")
        path = urlsplit(url).path
        if any(c.isspace() for c in path + out):
            raise ValueError(f"white space in {path!r} or {out!r}")
        process = self._process
        if process.stdin is None or process.stdout is None:
            raise RuntimeError("the native bound has no pipes")
        try:
            process.stdin.write(f"{'sha256' if hashed else 'raw'} {path} {out}\n")
            process.stdin.flush()
        except BrokenPipeError as exc:
            raise RuntimeError(f"the native bound stopped: {process.poll()}") from exc
        with selectors.DefaultSelector() as waiting:
            waiting.register(process.stdout, selectors.EVENT_READ)
            if not waiting.select(self._answer_seconds):
                process.kill()
                raise RuntimeError(
                    f"the native bound took over {self._answer_seconds} s"
                )
        answer = process.stdout.readline().split()
        if not answer:
            raise RuntimeError(f"the native bound stopped: {process.poll()}")
        if answer[0] != "ok" or len(answer) != 3:
            raise RuntimeError(f"the native bound: {' '.join(answer)}")
        return float(answer[1]), None if answer[2] == "-" else answer[2]

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


def start(directory: str, base_url: str) -> NativeClient | str:
    """Build and start the bound for the server at *base_url*.

    :return: the running bound, or why it is not there (for its rows)
    """
    try:
        return NativeClient(build(directory), base_url)
    except NativeUnavailableError as exc:
        return f"skipped: {exc}"
