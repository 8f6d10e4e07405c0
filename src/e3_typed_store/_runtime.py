"""Process-wide matters: whether beartype checks the package, and the state a
forked child starts afresh."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["reset_in_forked_child", "runtime_checks_enabled"]


def runtime_checks_enabled() -> bool:
    """Tell whether beartype checks this package's signatures in this process.

    .. versionadded:: 0.1
    """
    # This module is decorated like every other when the import hook is on,
    # so the function itself tells.
    return hasattr(runtime_checks_enabled, "__wrapped__")


def reset_in_forked_child(reset: Callable[[], None]) -> None:
    """Have a forked child call *reset*: the threads, locks and sockets of a
    module's shared state do not belong to it. (Windows has no fork.)"""
    if sys.platform != "win32":
        os.register_at_fork(after_in_child=reset)
