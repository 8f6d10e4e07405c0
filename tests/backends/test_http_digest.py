"""The digest computed beside a download, by a worker thread."""

from __future__ import annotations

import hashlib
import threading

import pytest

from e3_typed_store import _http
from e3_typed_store._http import DigestWorkers, OverlappedDigest

# As much as is hashed inline: a digest of more goes to a worker.
_BIG = bytes(range(256)) * (_http.INLINE_DIGEST_BYTES // 256)


def test_the_digest_of_chunks_handed_to_a_worker() -> None:
    digest = OverlappedDigest("sha256")
    digest.expect(None)
    for _ in range(3):
        digest.update(_BIG)
    assert digest.hexdigest() == hashlib.sha256(_BIG * 3).hexdigest()


@pytest.mark.parametrize("last", [1, 100_000, len(_BIG)])
def test_the_digest_of_content_of_known_size_ending_in_a_short_piece(
    last: int,
) -> None:
    # The piece that completes the content goes to the worker at once,
    # however short of a batch it is.
    pieces = [_BIG, _BIG[:300_000], _BIG[:last]]
    digest = OverlappedDigest("sha256")
    digest.expect(sum(map(len, pieces)))
    for piece in pieces:
        digest.update(piece)
    assert digest.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


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
