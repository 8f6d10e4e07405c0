"""The digest computed beside a download, by a worker thread."""

from __future__ import annotations

import hashlib
import threading

import pytest

from e3_typed_store import _http
from e3_typed_store._http import DigestWorkers, OverlappedDigest

_BIG = bytes(range(256)) * 4096  # 1 MiB: past what is hashed inline


def test_the_digest_of_chunks_handed_to_a_worker() -> None:
    digest = OverlappedDigest("sha256")
    digest.expect(None)
    for _ in range(8):
        digest.update(_BIG)
    assert digest.hexdigest() == hashlib.sha256(_BIG * 8).hexdigest()


def test_an_interrupt_while_a_worker_starts_does_not_hang_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C reaches Thread.start while it waits for the new thread: a
    # stand-in, since a real signal cannot be aimed at that moment.
    monkeypatch.setattr(_http, "DIGEST_WORKERS", DigestWorkers())  # none idle

    def interrupted(thread: threading.Thread) -> None:
        raise KeyboardInterrupt

    digest = OverlappedDigest("sha256")
    digest.expect(len(_BIG) * 2)
    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", interrupted)
        with pytest.raises(KeyboardInterrupt):
            digest.update(_BIG)
    closing = threading.Thread(target=digest.close, daemon=True)
    closing.start()
    closing.join(10)
    assert not closing.is_alive(), "close() waits for a worker that never came"
