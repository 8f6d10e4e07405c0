"""Loading store and cache drivers by name, through stevedore entry points.

The package's own namespaces are :data:`STORE_NAMESPACE` and
:data:`CACHE_NAMESPACE`. Its drivers are also registered in e3-core's
namespaces (``e3.store``, ``e3.store.cache.backend``) under ``typed-`` names,
so that plain e3 code can load them.

A driver is checked when it is loaded: it must offer every method of the
store (or cache) API with the parameter names of that API. A driver that does
not conform raises :class:`PluginError` naming what is missing.

Typing: ``load_cache`` gives a known name's precise type through overloads.
``load_store`` gives an *erased* type, ``StoreProtocol[ResourceInfoProtocol,
Query]``, which accepts any metadata and query statically -- pass it only the
metadata its own ``get_resource_metadata`` returned -- unless the caller names
the class it expects (``expect=``), which is then checked at run time. A
``Literal`` overload per store name cannot be sound: a store's query and
metadata types are narrower than the erased ones, so the precise overload
would overlap the erased one with an incompatible result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeGuard, TypeVar, overload

from e3_typed_store._types import CachedResource
from e3_typed_store.backends.base import (
    Query,
    ResourceInfoProtocol,
    StoreProtocol,
)
from e3_typed_store.cache.backends.base import CacheConfiguration, CacheProtocol
from e3_typed_store.errors import PluginError

if TYPE_CHECKING:
    # Only for the overloads on known names, which are never called: the
    # package's import stays light.
    from e3_typed_store.cache.backends.filecache import (
        FileCache,
        FileCacheConfiguration,
    )
    from e3_typed_store.cache.backends.memory import MemoryCache

__all__ = [
    "CACHE_API",
    "CACHE_NAMESPACE",
    "STORE_API",
    "STORE_NAMESPACE",
    "check_driver",
    "driver_names",
    "load_cache",
    "load_driver_class",
    "load_store",
]

#: The entry-point namespace of this package's store drivers.
STORE_NAMESPACE = "e3_typed_store.store"
#: The entry-point namespace of this package's cache backends.
CACHE_NAMESPACE = "e3_typed_store.cache"

#: Each method a store driver must offer, with its parameters after ``self``.
STORE_API: dict[str, tuple[str, ...]] = {
    "get_resource_metadata": ("query",),
    "download_resource": ("metadata", "dest"),
    "download_resource_content": ("metadata", "dest"),
}
#: Each method a cache backend must offer, with its parameters after ``self``.
CACHE_API: dict[str, tuple[str, ...]] = {
    "get": ("uid", "default"),
    "set": ("uid", "value", "timeout"),
    "delete": ("uid",),
    "clear": (),
    "has_resource": ("uid",),
    "__contains__": ("uid",),
    "get_expiry_time": ("timeout",),
    "close": (),
}

# A loaded store whose driver is not known statically (see the module docstring).
ErasedStore = StoreProtocol[ResourceInfoProtocol, Query]
StoreT = TypeVar("StoreT")


def _is_erased_store(value: object) -> TypeGuard[ErasedStore]:
    # The erasure of the module docstring: the methods are there, their
    # parameter types cannot be known until the driver is called.
    return isinstance(value, StoreProtocol)


def _is_cache(value: object) -> TypeGuard[CacheProtocol[CachedResource]]:
    # Whether set() takes a CachedResource cannot be checked before it is called.
    return isinstance(value, CacheProtocol)


def driver_names(namespace: str) -> list[str]:
    """List the names registered in an entry-point namespace, sorted.

    :param namespace: the entry-point group
    """
    from importlib.metadata import entry_points

    return sorted({entry.name for entry in entry_points(group=namespace)})


def load_driver_class(namespace: str, name: str) -> type:
    """Import the class registered as *name* in *namespace*.

    :param namespace: the entry-point group
    :param name: the driver's name
    :raises PluginError: no such driver, several, or it fails to import
    """
    import stevedore
    from stevedore.exception import MultipleMatches, NoMatches

    failures: list[BaseException] = []

    def on_failure(_manager: object, _entry: object, exc: BaseException) -> None:
        failures.append(exc)

    try:
        manager: stevedore.DriverManager[object] = stevedore.DriverManager(
            namespace,
            name,
            on_load_failure_callback=on_failure,
            on_missing_entrypoints_callback=None,
        )
    except NoMatches as exc:
        if failures:
            raise PluginError(
                namespace, name, f"cannot be imported: {failures[0]!r}"
            ) from failures[0]
        known = ", ".join(driver_names(namespace)) or "none"
        raise PluginError(
            namespace, name, f"no such driver (installed: {known})"
        ) from exc
    except MultipleMatches as exc:
        raise PluginError(namespace, name, "registered more than once") from exc
    driver: object = manager.driver
    if not isinstance(driver, type):
        raise PluginError(namespace, name, f"{driver!r} is not a class")
    return driver


def check_driver(driver: type, api: dict[str, tuple[str, ...]]) -> list[str]:
    """List how *driver* departs from *api*; an empty list means it conforms.

    :param driver: the driver class
    :param api: :data:`STORE_API` or :data:`CACHE_API`
    """
    import inspect  # here: it costs a third of the package's import time

    problems: list[str] = []
    if inspect.isabstract(driver):
        abstract = ", ".join(sorted(getattr(driver, "__abstractmethods__", ())))
        problems.append(f"abstract methods not implemented: {abstract}")
    for method, expected in api.items():
        member: object = getattr(driver, method, None)
        if not callable(member):
            problems.append(f"missing method {method}()")
            continue
        try:
            signature = inspect.signature(member)
        except (TypeError, ValueError):
            continue  # a builtin without a signature: cannot tell, accept it
        names = [
            parameter.name
            for parameter in signature.parameters.values()
            if parameter.kind
            in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        ][1:]  # drop self
        if tuple(names[: len(expected)]) != expected:
            problems.append(
                f"{method}() takes ({', '.join(names)}), expected"
                f" ({', '.join(expected)})"
            )
    return problems


def _conforming(namespace: str, name: str, api: dict[str, tuple[str, ...]]) -> type:
    driver = load_driver_class(namespace, name)
    problems = check_driver(driver, api)
    if problems:
        raise PluginError(namespace, name, "; ".join(problems))
    return driver


@overload
def load_store(
    name: str, configuration: object, cache: CacheProtocol[CachedResource] | None
) -> ErasedStore: ...


@overload
def load_store(
    name: str,
    configuration: object,
    cache: CacheProtocol[CachedResource] | None,
    *,
    expect: type[StoreT],
) -> StoreT: ...


def load_store(
    name: str,
    configuration: object,
    cache: CacheProtocol[CachedResource] | None,
    *,
    expect: type[StoreT] | None = None,
) -> ErasedStore | StoreT:
    """Load the store driver registered as *name* and build it.

    Without *expect*, the result has the erased type of the module docstring.
    With it, the result is checked to be an instance of that class and has
    its precise type: ``load_store("http-simple-store", {}, cache,
    expect=HTTPSimpleStore)`` is an ``HTTPSimpleStore``.

    :param name: the driver's name in :data:`STORE_NAMESPACE`
    :param configuration: the driver's configuration
    :param cache: the cache backend the store records downloads in
    :param expect: the class the driver must build
    :raises PluginError: the driver is not installed, does not conform, or
        does not build an *expect*

    .. versionadded:: 0.1
    """
    driver = _conforming(STORE_NAMESPACE, name, STORE_API)
    store: object = driver(configuration, cache)
    if expect is not None:
        if not isinstance(store, expect):
            raise PluginError(
                STORE_NAMESPACE,
                name,
                f"builds a {type(store).__qualname__}, not the expected"
                f" {expect.__qualname__}",
            )
        return store
    if not _is_erased_store(store):
        raise PluginError(STORE_NAMESPACE, name, "does not build a store")
    return store


@overload
def load_cache(
    name: Literal["file-cache"], configuration: FileCacheConfiguration
) -> FileCache: ...


@overload
def load_cache(
    name: Literal["memory-cache"], configuration: CacheConfiguration = None
) -> MemoryCache[CachedResource]: ...


@overload
def load_cache(
    name: str = "file-cache", configuration: object = None
) -> CacheProtocol[CachedResource]: ...


def load_cache(
    name: str = "file-cache", configuration: object = None
) -> CacheProtocol[CachedResource]:
    """Load the cache backend registered as *name* and build it.

    :param name: the backend's name in :data:`CACHE_NAMESPACE`
    :param configuration: the backend's configuration
    :raises PluginError: the backend is not installed or does not conform

    .. versionadded:: 0.1
    """
    backend = _conforming(CACHE_NAMESPACE, name, CACHE_API)
    cache: object = backend(configuration)
    if not _is_cache(cache):
        raise PluginError(CACHE_NAMESPACE, name, "does not build a cache")
    return cache
