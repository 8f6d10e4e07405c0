"""Types shared by the store and cache modules, apart to avoid an import cycle.

Besides :class:`CachedResource` and the digest algorithms, this module gives
the modules of the package the ``typing_extensions`` names they need at run
time -- ``TypeVar`` with a PEP 696 default, and ``override`` -- without
importing ``typing_extensions`` on Python 3.11 and later: that module alone
costs a sixth of the import time of ``e3_typed_store.backends.base``. Type
checkers see ``typing_extensions``'s own definitions.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeGuard

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "CachedResource",
    "TypeVar",
    "is_mapping",
    "override",
]

#: A digest algorithm the package serves.
Algorithm = Literal["sha1", "sha256", "sha512"]

#: Each served algorithm and the length of its hex digest (here, not in
#: ``_hashing``: knowing them does not need hashlib loaded).
ALGORITHMS: dict[Algorithm, int] = {"sha1": 40, "sha256": 64, "sha512": 128}

if TYPE_CHECKING:
    from typing_extensions import TypeVar as TypeVar
    from typing_extensions import override as override
else:
    if sys.version_info >= (3, 12):
        from typing import override
    else:

        def override(method):
            # typing.override of Python 3.12: mark the method, for introspection.
            try:
                method.__override__ = True
            except (AttributeError, TypeError):
                pass  # a callable that takes no attributes stays unmarked
            return method

    if sys.version_info >= (3, 13):
        from typing import TypeVar
    elif sys.version_info < (3, 11):
        # No hook for defaults in typing: typing_extensions patches it.
        from typing_extensions import TypeVar
    else:
        import typing

        def TypeVar(  # named as the class it stands for
            name,
            *constraints,
            bound=None,
            covariant=False,
            contravariant=False,
            default,
        ):
            # Only type variables with a default come here: without one,
            # typing.TypeVar does. typing_extensions' TypeVar on 3.11 and
            # 3.12 is this, without patching the typing module.
            typevar = typing.TypeVar(
                name,
                *constraints,
                bound=bound,
                covariant=covariant,
                contravariant=contravariant,
            )
            # typing credits the module that called it, this one: pickling
            # finds a type variable through the module that defines it.
            typevar.__module__ = sys._getframe(1).f_globals.get("__name__", "__main__")
            typevar.__default__ = default
            typevar.has_default = lambda: True

            def fill_default(alias, args):
                # Generic.__class_getitem__ asks each parameter in turn; the one
                # just past the arguments given appends its default.
                if alias.__parameters__.index(typevar) == len(args):
                    args += (default,)
                return args

            typevar.__typing_prepare_subst__ = fill_default
            return typevar


class CachedResource(NamedTuple):
    """Cached information about an already downloaded resource.

    A named tuple like e3-core's: it unpacks as ``uid, local_path``, compares
    equal to e3-core's ``CachedResource`` with the same fields, and pickles.

    .. versionadded:: 0.1
    """

    #: The uid of the resource (see :attr:`ResourceInfo.uid`).
    uid: str
    #: Where the verified copy of the resource lies.
    local_path: str


def is_mapping(value: object) -> TypeGuard[Mapping[object, object]]:
    """Whether *value* is a mapping (a configuration, a JSON object), keys unknown."""
    return isinstance(value, Mapping)
