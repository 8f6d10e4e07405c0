"""This package's drivers as e3-core's loaders give them to e3-core code.

They are registered in e3-core's entry-point namespaces (``e3.store`` and
``e3.store.cache.backend``, as ``typed-*``), and code that loads them there is
e3-core code. It hands stores and caches e3-core's own ``CachedResource``, and
it catches ``e3.store.backends.base.StoreError``. The subclasses here accept
the one, also with runtime checks on, and raise errors that are also the
other. This package's own classes keep their exact types, and importing them
does not import e3-core's store modules, which this module does. Importing it
costs nothing more to code that e3-core's loader serves, since that code has
imported those modules already.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import e3.store.backends.base as e3_base

from e3_typed_store._types import CachedResource, override
from e3_typed_store.backends.base import StoreOptions
from e3_typed_store.backends.file_store import (
    FileStore,
    FileStoreConfiguration,
    FileStoreQuery,
    FileStoreResourceInfo,
)
from e3_typed_store.backends.http_simple_store import (
    HTTPSimpleQuery,
    HTTPSimpleStore,
    HTTPSimpleStoreConfiguration,
    HTTPSimpleStoreResourceInfo,
)
from e3_typed_store.cache.backends.base import DEFAULT_TIMEOUT, CacheProtocol
from e3_typed_store.cache.backends.filecache import FileCache, FileCacheConfiguration
from e3_typed_store.errors import StoreError

__all__ = [
    "E3CoreFileCache",
    "E3CoreFileStore",
    "E3CoreHTTPSimpleStore",
    "e3_flavoured",
]

_FLAVOURS: dict[type[StoreError], type[StoreError]] = {}
_R = TypeVar("_R")


def e3_flavoured(error: StoreError) -> StoreError:
    """Return *error* as an instance of a class that derives from its own and
    from e3-core's ``StoreError``, with the same attributes and message.

    :param error: an error of this package
    """
    cls = type(error)
    flavour = _FLAVOURS.get(cls)
    if flavour is None:
        made = types.new_class(
            cls.__name__,
            (cls, e3_base.StoreError),
            exec_body=lambda namespace: namespace.update(__module__=cls.__module__),
        )
        if not issubclass(made, StoreError):  # pragma: no cover - by construction
            raise TypeError(f"{made!r} is no StoreError")
        flavour = _FLAVOURS[cls] = made
    if cls is flavour:
        return error
    copy = flavour.__new__(flavour)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    return copy.with_traceback(error.__traceback__)


def _raising_e3_errors(call: Callable[[], _R]) -> _R:
    """Return ``call()``; an error of this package it raises is also e3-core's."""
    try:
        return call()
    except StoreError as exc:
        raise e3_flavoured(exc) from exc.__cause__


class E3CoreHTTPSimpleStore(HTTPSimpleStore):
    """:class:`HTTPSimpleStore` for e3-core code: its errors are also e3-core's
    ``StoreError``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store_configuration: HTTPSimpleStoreConfiguration | None,
        cache_backend: CacheProtocol[CachedResource] | None,
        *,
        options: StoreOptions | None = None,
    ) -> None:
        build = super().__init__
        _raising_e3_errors(
            partial(build, store_configuration, cache_backend, options=options)
        )

    @override
    def get_resource_metadata(
        self, query: HTTPSimpleQuery
    ) -> HTTPSimpleStoreResourceInfo:
        return _raising_e3_errors(partial(super().get_resource_metadata, query))

    @override
    def download_resource_content(
        self, metadata: HTTPSimpleStoreResourceInfo, dest: str
    ) -> str:
        return _raising_e3_errors(
            partial(super().download_resource_content, metadata, dest)
        )

    @override
    def fetch_resource(self, metadata: HTTPSimpleStoreResourceInfo, dest: str) -> str:
        return _raising_e3_errors(partial(super().fetch_resource, metadata, dest))


class E3CoreFileStore(FileStore):
    """:class:`FileStore` for e3-core code: its errors are also e3-core's
    ``StoreError``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store_configuration: FileStoreConfiguration | None,
        cache_backend: CacheProtocol[CachedResource] | None,
        *,
        options: StoreOptions | None = None,
    ) -> None:
        build = super().__init__
        _raising_e3_errors(
            partial(build, store_configuration, cache_backend, options=options)
        )

    @override
    def get_resource_metadata(self, query: FileStoreQuery) -> FileStoreResourceInfo:
        return _raising_e3_errors(partial(super().get_resource_metadata, query))

    @override
    def download_resource_content(
        self, metadata: FileStoreResourceInfo, dest: str
    ) -> str:
        return _raising_e3_errors(
            partial(super().download_resource_content, metadata, dest)
        )

    @override
    def fetch_resource(self, metadata: FileStoreResourceInfo, dest: str) -> str:
        return _raising_e3_errors(partial(super().fetch_resource, metadata, dest))


class E3CoreFileCache(FileCache):
    """:class:`FileCache` for e3-core code: it stores e3-core's
    ``CachedResource`` too, which e3-core's ``Store`` hands it.

    .. versionadded:: 0.1
    """

    def __init__(self, cache_configuration: FileCacheConfiguration) -> None:
        _raising_e3_errors(partial(super().__init__, cache_configuration))

    @override
    def set(
        self,
        uid: str,
        value: CachedResource | e3_base.CachedResource,
        timeout: int = DEFAULT_TIMEOUT,
    ) -> bool:
        """Store *value* under *uid*, as :meth:`FileCache.set` does.

        :param uid: the resource uid
        :param value: the entry, this package's or e3-core's
        :param timeout: the entry's lifetime in seconds
        """
        return super().set(uid, CachedResource(value.uid, value.local_path), timeout)
