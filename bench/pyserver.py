"""The fallback file server, run as its own process when nginx is missing.

``python -m bench.pyserver ROOT PORT ACCESS_LOG [TLS_PORT CERTIFICATE KEY]``:
serves ROOT on 127.0.0.1:PORT with one line per request in ACCESS_LOG (so GETs
can be counted, as in nginx's log) and ``sendfile`` for the bodies; with the
last three, over HTTPS on TLS_PORT too.
"""

from __future__ import annotations

import functools
import io
import shutil
import ssl
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, AnyStr, TextIO

from typing_extensions import override

if TYPE_CHECKING:
    from _typeshed import SupportsRead, SupportsWrite

_log_lock = threading.Lock()


class _Handler(SimpleHTTPRequestHandler):
    access_log: TextIO

    @override
    def copyfile(
        self, source: SupportsRead[AnyStr], outputfile: SupportsWrite[AnyStr]
    ) -> None:
        # The handler's files are opened 'rb': a real file, sent by the kernel.
        if not isinstance(source, io.BufferedReader):
            super().copyfile(source, outputfile)
            return
        try:
            self.connection.sendfile(source)
        except (OSError, ValueError):
            shutil.copyfileobj(source, outputfile, 1 << 20)

    @override
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        with _log_lock:
            self.access_log.write(
                f'{self.client_address[0]} "{self.requestline}" {code}\n'
            )
            self.access_log.flush()

    @override
    def log_message(self, format: str, *args: object) -> None:
        pass  # errors are answered to the client; no stderr noise


def main(argv: list[str]) -> int:
    root, port, log_path = argv[0], int(argv[1]), argv[2]
    with open(log_path, "a", encoding="utf-8") as access_log:
        handler = functools.partial(_Handler, directory=root)
        _Handler.access_log = access_log
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        server.daemon_threads = True
        servers = [server]
        if len(argv) == 6:
            secure = ThreadingHTTPServer(("127.0.0.1", int(argv[3])), handler)
            secure.daemon_threads = True
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(argv[4], argv[5])
            secure.socket = context.wrap_socket(secure.socket, server_side=True)
            servers.append(secure)
            threading.Thread(
                target=secure.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
            ).start()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            for each in servers:
                each.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
