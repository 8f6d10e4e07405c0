"""e3-typed-store: a strictly typed, hardened redesign of e3-core's resource store.

Set the environment variable ``E3_TYPED_STORE_RUNTIME_CHECKS=1`` before the
first import of the package to have beartype enforce every annotated signature
of it at run time. Without it, importing the package does not import beartype.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os

#: The environment variable that turns runtime type checking on ("1", "true", "yes").
RUNTIME_CHECKS_VARIABLE = "E3_TYPED_STORE_RUNTIME_CHECKS"

if os.environ.get(RUNTIME_CHECKS_VARIABLE, "").strip().lower() in {"1", "true", "yes"}:
    # Before any submodule is imported: the import hook decorates only the
    # modules imported after it is installed. A hint beartype cannot check
    # raises instead of warning.
    from beartype import BeartypeConf
    from beartype.claw import beartype_this_package

    beartype_this_package(conf=BeartypeConf(warning_cls_on_decorator_exception=None))

# After the hook: these modules are checked like the others.
from e3_typed_store._plugins import (  # noqa: E402
    CACHE_NAMESPACE as CACHE_NAMESPACE,
)
from e3_typed_store._plugins import (  # noqa: E402
    STORE_NAMESPACE as STORE_NAMESPACE,
)
from e3_typed_store._plugins import load_cache as load_cache  # noqa: E402
from e3_typed_store._plugins import load_store as load_store  # noqa: E402
from e3_typed_store._runtime import (  # noqa: E402
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
