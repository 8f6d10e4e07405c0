"""The loopback file server: nginx with its own configuration, or a fallback.

It serves the payloads over plain HTTP, and over HTTPS on a second port when a
certificate can be made (``openssl`` on the PATH): a self-signed one for
127.0.0.1, made for the run, which the clients trust through
``REQUESTS_CA_BUNDLE``.

Whatever happens, a started server is stopped: :meth:`Server.stop` is called
from the caller's ``finally`` and registered with :mod:`atexit`, and it kills
the server's whole process group (nginx's master and workers).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

__all__ = [
    "Certificate",
    "Server",
    "ensure_tools",
    "find_nginx",
    "make_certificate",
    "start_server",
]

_NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};
        location / {{ }}
    }}
{tls}}}
"""
_NGINX_TLS_SERVER = """\
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        root {root};
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        location / {{ }}
    }}
"""


def find_nginx() -> str | None:
    """Return the nginx executable, if installed (also outside PATH)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def ensure_tools(install: bool, log: list[str]) -> None:
    """Install nginx, curl and openssl with apt when missing and *install* is set,
    and what the native bound is built with (a C compiler, OpenSSL's headers).

    Services are not started by the package (Debian's policy-rc.d on this
    machine denies it; nginx is only ever run by this benchmark).
    """
    missing = [
        package
        for package, present in (
            ("nginx", find_nginx() is not None),
            ("curl", shutil.which("curl") is not None),
            ("openssl", shutil.which("openssl") is not None),
            ("gcc", (shutil.which("cc") or shutil.which("gcc")) is not None),
            ("libssl-dev", os.path.exists("/usr/include/openssl/evp.h")),
        )
        if not present
    ]
    if not missing:
        return
    if not install:
        log.append(f"not installing {', '.join(missing)} (no installs in this mode)")
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        log.append(f"cannot install {', '.join(missing)}: needs apt-get as root")
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *missing],
    ):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            log.append(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")
            return
    log.append(f"installed with apt: {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1, and its key (PEM files)."""

    path: str
    key: str


def make_certificate(directory: str) -> Certificate | str:
    """Make a certificate for 127.0.0.1 in *directory*, or say why not."""
    if shutil.which("openssl") is None:
        return "openssl is not installed"
    path = os.path.join(directory, "certificate.pem")
    key = os.path.join(directory, "key.pem")
    done = subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", key, "-out", path, "-days", "2"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return f"openssl could not make a certificate: {done.stderr.strip()[-200:]}"
    return Certificate(path, key)


@dataclass
class Server:
    """A running server: its base URL, what it is, and how to count its GETs."""

    kind: str
    port: int
    access_log: str
    process: subprocess.Popen[bytes]
    #: The HTTPS port and its certificate, or why there is none.
    tls: tuple[int, Certificate] | str = "not started"
    stopped: bool = field(default=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def https_url(self, name: str) -> str | None:
        """The HTTPS URL of */name*, None when there is no HTTPS port."""
        if isinstance(self.tls, str):
            return None
        return f"https://127.0.0.1:{self.tls[0]}/{name}"

    def count_gets(self, name: str) -> int:
        """Return how many GETs of */name* the access log holds so far."""
        needle = f'"GET /{name} '
        try:
            with open(self.access_log, encoding="utf-8", errors="replace") as log:
                return sum(1 for line in log if needle in line)
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        """Stop the server and every process of its group; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # nginx's workers may outlive the master by a moment: wait for the group.
        for _ in range(50):
            try:
                os.killpg(self.process.pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _wait_ready(server: Server, error_log: str | None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            detail = ""
            if error_log is not None and os.path.exists(error_log):
                with open(error_log, encoding="utf-8", errors="replace") as stream:
                    detail = stream.read()[-500:]
            raise RuntimeError(f"{server.kind} exited early: {detail}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{server.kind} did not listen on port {server.port} in 15 s")


def _tls(certificate: Certificate | str) -> tuple[int, Certificate] | str:
    """A free port for HTTPS with *certificate*, or why there is none."""
    if isinstance(certificate, str):
        return certificate
    return _free_port(), certificate


def _start_nginx(
    nginx: str, root: str, tmp: str, certificate: Certificate | str
) -> Server:
    version = subprocess.run(
        [nginx, "-v"], capture_output=True, text=True, timeout=10, check=False
    ).stderr.strip()
    port = _free_port()
    tls = _tls(certificate)
    block = ""
    if isinstance(tls, tuple):
        block = _NGINX_TLS_SERVER.format(
            port=tls[0], root=root, certificate=tls[1].path, key=tls[1].key
        )
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as stream:
        stream.write(_NGINX_CONF.format(tmp=tmp, port=port, root=root, tls=block))
    error_log = os.path.join(tmp, "error.log")
    process = subprocess.Popen(
        [nginx, "-p", tmp, "-c", conf, "-e", error_log],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    kind = version.removeprefix("nginx version: ") or "nginx"
    server = Server(kind, port, os.path.join(tmp, "access.log"), process, tls)
    atexit.register(server.stop)
    _wait_ready(server, error_log)
    return server


def _start_python(
    root: str, tmp: str, reason: str, certificate: Certificate | str
) -> Server:
    port = _free_port()
    access_log = os.path.join(tmp, "access.log")
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": here}
    tls = _tls(certificate)
    tls_arguments: list[str] = []
    if isinstance(tls, tuple):
        tls_arguments = [str(tls[0]), tls[1].path, tls[1].key]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.pyserver", root, str(port), access_log),
            *tls_arguments,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    server = Server(
        f"Python http.server (fallback: {reason})", port, access_log, process, tls
    )
    atexit.register(server.stop)
    _wait_ready(server, None)
    return server


def start_server(root: str, tmp: str, prefer: str) -> Server:
    """Start a server for *root* with its files in *tmp*.

    :param prefer: ``nginx``, ``python`` or ``auto`` (nginx when installed)
    """
    # The payloads must be readable by nginx's unprivileged workers.
    for directory in (tmp, root):
        os.chmod(directory, 0o755)
    certificate = make_certificate(tmp)
    nginx = find_nginx() if prefer != "python" else None
    if nginx is not None:
        try:
            return _start_nginx(nginx, root, tmp, certificate)
        except (OSError, RuntimeError) as exc:
            if prefer == "nginx":
                raise
            reason = f"nginx failed to start: {exc}"
            return _start_python(root, tmp, reason, certificate)
    if prefer == "nginx":
        raise RuntimeError("nginx is not installed")
    reason = "asked for" if prefer == "python" else "nginx is not installed"
    return _start_python(root, tmp, reason, certificate)
