"""e3-typed-store: a strictly typed, hardened redesign of e3-core's resource store.

Set the environment variable ``E3_TYPED_STORE_RUNTIME_CHECKS=1`` before the
first import of the package to have beartype enforce every annotated signature
of it at run time. Without it, importing the package does not import beartype.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

#: The environment variable that turns runtime type checking on ("1", "true",
#: "yes" or "on", as ``E3_TYPED_STORE_OFFLINE`` reads them).
RUNTIME_CHECKS_VARIABLE = "E3_TYPED_STORE_RUNTIME_CHECKS"

_CHECKS = os.environ.get(RUNTIME_CHECKS_VARIABLE, "").strip().lower() in {
    "1",
    "true",
    "yes",
    "on",
}

if _CHECKS:
    # Before any submodule is imported: the import hook decorates only the
    # modules imported after it is installed. A hint beartype cannot check
    # raises instead of warning. An int passes for a float, as type checkers
    # let it (PEP 484's numeric tower): StoreOptions(lock_timeout=5) is fine.
    from beartype import BeartypeConf
    from beartype.claw import beartype_this_package

    beartype_this_package(
        conf=BeartypeConf(is_pep484_tower=True, warning_cls_on_decorator_exception=None)
    )

if TYPE_CHECKING:
    from e3_typed_store._plugins import CACHE_NAMESPACE as CACHE_NAMESPACE
    from e3_typed_store._plugins import STORE_NAMESPACE as STORE_NAMESPACE
    from e3_typed_store._plugins import load_cache as load_cache
    from e3_typed_store._plugins import load_store as load_store
    from e3_typed_store._runtime import (
        runtime_checks_enabled as runtime_checks_enabled,
    )

__all__ = [
    "CACHE_NAMESPACE",
    "RUNTIME_CHECKS_VARIABLE",
    "STORE_NAMESPACE",
    "__version__",
    "load_cache",
    "load_store",
    "runtime_checks_enabled",
]

__version__ = "0.1.0"

# Where each name of __all__ not defined here lives. The plugin loader is
# imported when one of its names is first asked for (PEP 562), so that
# importing a store or cache module does not import it.
_LAZY = {
    "CACHE_NAMESPACE": "e3_typed_store._plugins",
    "STORE_NAMESPACE": "e3_typed_store._plugins",
    "load_cache": "e3_typed_store._plugins",
    "load_store": "e3_typed_store._plugins",
    "runtime_checks_enabled": "e3_typed_store._runtime",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value: object = getattr(import_module(module), name)
    globals()[name] = value  # asked once: later lookups find it here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


if _CHECKS:
    # The hook decorates the modules imported after it, not this one.
    from beartype import beartype

    __getattr__ = beartype(__getattr__)
    __dir__ = beartype(__dir__)
