"""Cache backends; :func:`load_cache` where ``e3.store.cache`` has it.

``load_cache`` is the one of :mod:`e3_typed_store`, given here too so that code
moving from ``from e3.store.cache import load_cache`` changes one word. The
plugin loader is imported when the name is first asked for (PEP 562), so that
importing a cache module does not import it.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from e3_typed_store._plugins import load_cache as load_cache

__all__ = ["load_cache"]


def __getattr__(name: str) -> object:
    if name != "load_cache":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from e3_typed_store._plugins import load_cache

    globals()[name] = load_cache  # asked once: later lookups find it here
    return load_cache


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
