"""Loading store and cache drivers by name, through stevedore entry points.

The package's own namespaces are :data:`STORE_NAMESPACE` and
:data:`CACHE_NAMESPACE`. Its drivers are also registered in e3-core's
namespaces (``e3.store``, ``e3.store.cache.backend``) under ``typed-`` names,
so that plain e3 code can load them.

A driver is checked when it is loaded: it must offer every method of the
store (or cache) API with the parameter names of that API, and a constructor
taking the store's configuration and cache (the cache's configuration). A
driver that does not conform raises :class:`PluginError` naming what is
missing; so does one whose import raises (anything but a
``KeyboardInterrupt``, which may be the user's Ctrl-C) or whose constructor
raises ``TypeError``.

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
    import inspect

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

#: Each method a store driver must offer, with its parameters after ``self``;
#: ``__init__``: what :func:`load_store` passes the constructor, positionally.
STORE_API: dict[str, tuple[str, ...]] = {
    "__init__": ("store_configuration", "cache_backend"),
    "get_resource_metadata": ("query",),
    "download_resource": ("metadata", "dest"),
    "download_resource_content": ("metadata", "dest"),
}
#: Each method a cache backend must offer, with its parameters after ``self``;
#: ``__init__``: what :func:`load_cache` passes the constructor, positionally.
CACHE_API: dict[str, tuple[str, ...]] = {
    "__init__": ("cache_configuration",),
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

    Whatever the import raises but a ``KeyboardInterrupt`` (an
    ``AssertionError``, a ``SystemExit``, a ``SyntaxError``...) becomes a
    :class:`PluginError`.

    :param namespace: the entry-point group
    :param name: the driver's name
    :raises PluginError: no such driver, several, a value that is not
        ``module:attribute``, or it fails to import
    """
    from importlib.metadata import entry_points

    import stevedore
    from stevedore.exception import MultipleMatches, NoMatches

    registered = [
        entry for entry in entry_points(group=namespace) if entry.name == name
    ]
    if len(registered) > 1:
        # Refused before any is imported: which one loads must not depend on
        # which of them happens to import.
        raise PluginError(namespace, name, "registered more than once")
    for entry in registered:
        if entry.pattern.match(entry.value) is None:
            # Else importlib's own "'NoneType' object has no attribute 'group'".
            raise PluginError(
                namespace, name, f"{entry.value!r} is not module:attribute"
            )

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
    except KeyboardInterrupt:
        raise  # the user's Ctrl-C, as far as anyone can tell
    except BaseException as exc:  # a plugin's failure, reported (re-raised)
        # What stevedore does not hand to on_failure: an AssertionError, which
        # it re-raises, and what is no Exception (SystemExit, GeneratorExit, a
        # class of the plugin's own), which it does not catch.
        raise PluginError(namespace, name, f"cannot be imported: {exc!r}") from exc
    driver: object = manager.driver
    if not isinstance(driver, type):
        raise PluginError(namespace, name, f"{driver!r} is not a class")
    return driver


def check_driver(driver: type, api: dict[str, tuple[str, ...]]) -> list[str]:
    """List how *driver* departs from *api*; an empty list means it conforms.

    A method must take the API's parameters, by the API's names, first after
    ``self`` (none for a ``staticmethod``; a ``classmethod`` has its class);
    ``*args`` takes any that its named parameters leave. ``__init__`` must
    take the API's arguments positionally, by any names.

    :param driver: the driver class
    :param api: :data:`STORE_API` or :data:`CACHE_API`
    """
    import inspect  # here: it costs a third of the package's import time

    problems: list[str] = []
    try:
        if inspect.isabstract(driver):
            abstract = ", ".join(sorted(getattr(driver, "__abstractmethods__", ())))
            problems.append(f"abstract methods not implemented: {abstract}")
    except Exception as exc:  # noqa: BLE001 - the class's own code, reported
        problems.append(f"cannot be inspected: {exc!r}")
    for method, expected in api.items():
        try:
            if method == "__init__":
                problem = _constructor_problem(driver, expected)
            else:
                problem = _method_problem(driver, method, expected)
        except Exception as exc:  # noqa: BLE001 - a metaclass's __getattr__...
            problem = f"{method}() cannot be inspected: {exc!r}"
        if problem is not None:
            problems.append(problem)
    return problems


def _constructor_problem(driver: type, expected: tuple[str, ...]) -> str | None:
    import inspect

    try:
        signature = inspect.signature(driver)
    except (TypeError, ValueError):
        return None  # no signature to read: cannot tell, accept it
    try:
        signature.bind(*expected)
    except TypeError:
        bare = signature.replace(
            parameters=[
                parameter.replace(annotation=parameter.empty)
                for parameter in signature.parameters.values()
            ],
            return_annotation=signature.empty,
        )
        return f"__init__() takes {bare}, expected ({', '.join(expected)})"
    return None


def _method_problem(driver: type, method: str, expected: tuple[str, ...]) -> str | None:
    import inspect

    member: object = getattr(driver, method, None)
    if not callable(member):
        return f"missing method {method}()"
    try:
        signature = inspect.signature(member)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: cannot tell, accept it
    parameters = list(signature.parameters.values())
    if _takes_the_instance(inspect.getattr_static(driver, method)):
        if parameters and _is_positional(parameters[0]):
            parameters = parameters[1:]
        # else *args takes self, or nothing does and the call says so.
    names = tuple(
        parameter.name for parameter in parameters if _is_positional(parameter)
    )
    if names[: len(expected)] == expected:
        return None
    if (
        any(parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters)
        and expected[: len(names)] == names
    ):
        return None  # the API's other parameters go to *args
    return f"{method}() takes ({', '.join(names)}), expected ({', '.join(expected)})"


def _is_positional(parameter: inspect.Parameter) -> bool:
    return parameter.kind in (
        parameter.POSITIONAL_ONLY,
        parameter.POSITIONAL_OR_KEYWORD,
    )


def _takes_the_instance(static: object) -> bool:
    # Whether the member, as the class holds it, is given the instance first
    # when called on one: a function or a method descriptor is, a
    # staticmethod or a classmethod (already bound to the class when got from
    # it) or another callable object is not.
    import inspect

    if isinstance(static, (staticmethod, classmethod)):
        return False
    return inspect.isfunction(static) or inspect.ismethoddescriptor(static)


def _cannot_build(namespace: str, name: str, error: TypeError) -> PluginError:
    # A TypeError from the constructor is the driver's fault (a signature the
    # check could not read, a bug); a bad configuration value is an
    # InvalidConfigurationError, which is not caught.
    return PluginError(namespace, name, f"cannot be built: {error!r}")


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
    :raises PluginError: the driver is not installed, is registered more
        than once, cannot be imported, does not conform, raises ``TypeError``
        when built, or does not build an *expect*

    .. versionadded:: 0.1
    """
    driver = _conforming(STORE_NAMESPACE, name, STORE_API)
    try:
        store: object = driver(configuration, cache)
    except TypeError as exc:
        raise _cannot_build(STORE_NAMESPACE, name, exc) from exc
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
    :raises PluginError: the backend is not installed, is registered more
        than once, cannot be imported, does not conform, or raises
        ``TypeError`` when built

    .. versionadded:: 0.1
    """
    backend = _conforming(CACHE_NAMESPACE, name, CACHE_API)
    try:
        cache: object = backend(configuration)
    except TypeError as exc:
        raise _cannot_build(CACHE_NAMESPACE, name, exc) from exc
    if not _is_cache(cache):
        raise PluginError(CACHE_NAMESPACE, name, "does not build a cache")
    return cache
