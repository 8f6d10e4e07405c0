"""Value types shared by the store and cache modules, apart to avoid an import cycle."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CachedResource"]


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
