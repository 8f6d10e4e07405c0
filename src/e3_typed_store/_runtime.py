"""Whether beartype checks the package in this process."""

from __future__ import annotations

__all__ = ["runtime_checks_enabled"]


def runtime_checks_enabled() -> bool:
    """Tell whether beartype checks this package's signatures in this process.

    .. versionadded:: 0.1
    """
    # This module is decorated like every other when the import hook is on,
    # so the function itself tells.
    return hasattr(runtime_checks_enabled, "__wrapped__")
