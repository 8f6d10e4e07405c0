"""A byte-counting progress bar for downloads, drawn by tqdm as in e3-core."""

from __future__ import annotations

import sys
from typing import Protocol, runtime_checkable

from tqdm import tqdm

__all__ = ["ByteProgress", "Terminal"]


@runtime_checkable
class Terminal(Protocol):
    """What the bar needs of its stream: ``sys.stderr`` or any text stream."""

    def write(self, s: str, /) -> object:
        """Write text."""
        ...

    def flush(self) -> object:
        """Flush what was written."""
        ...

    def isatty(self) -> bool:
        """Tell whether the stream is a terminal."""
        ...


class ByteProgress:
    """A progress bar counting bytes, on standard error, or nothing at all.

    The bar is drawn only when *enabled* and the stream is a terminal: a log
    file or a CI console gets no carriage-return noise. When it is not drawn,
    every method is a cheap no-op and tqdm draws nothing.

    :param enabled: whether the configuration asks for a bar
    :param description: a label shown before the bar (the file name)
    :param stream: where to draw; standard error (as it is now) by default,
        and nowhere when that is closed
    """

    def __init__(
        self, enabled: bool, description: str, stream: Terminal | None = None
    ) -> None:
        # sys.stderr is None when the process was started with it closed.
        self._stream: Terminal | None = stream if stream is not None else sys.stderr
        self._description = description
        self._active = (
            enabled and self._stream is not None and _is_terminal(self._stream)
        )
        self._bar: tqdm | None = None

    @property
    def active(self) -> bool:
        """Whether a bar is drawn."""
        return self._active

    def start(self, total: int | None, initial: int = 0) -> None:
        """Start counting, or start over after a restart or a resumed download.

        :param total: the size of the whole resource in bytes, None if unknown
        :param initial: bytes already received (a resumed download)
        """
        if not self._active or self._stream is None:
            return
        self.close()
        self._bar = tqdm(
            desc=self._description,
            total=total,
            initial=initial,
            file=self._stream,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
        )

    def advance(self, size: int) -> None:
        """Count *size* more bytes.

        :param size: bytes just received
        """
        if self._bar is not None:
            self._bar.update(size)

    def close(self) -> None:
        """Stop drawing; the last state of the bar stays on the terminal."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()


def _is_terminal(stream: Terminal) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd replacement stream
        return False
