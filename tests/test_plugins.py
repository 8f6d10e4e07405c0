"""Loading drivers by name through entry points, ours and e3-core's namespaces."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import e3.store.cache
import pytest
from stevedore import ExtensionManager

import e3_typed_store
from e3_typed_store import CACHE_NAMESPACE, STORE_NAMESPACE, load_cache, load_store
from e3_typed_store._plugins import CACHE_API, STORE_API, check_driver, driver_names
from e3_typed_store.cache.backends.memory import MemoryCache
from e3_typed_store.errors import PluginError
from tests.backends.drivers import CopyStore

BAD_DRIVERS = """
class NoContent:
    def __init__(self, configuration, cache):
        pass
    def get_resource_metadata(self, query):
        return None
    def download_resource(self, metadata, dest):
        return None

class WrongNames:
    def __init__(self, configuration, cache):
        pass
    def get_resource_metadata(self, q):
        return None
    def download_resource(self, metadata, dest):
        return None
    def download_resource_content(self, meta, directory):
        return None

NOT_A_CLASS = 42

class ImpostorStore:
    # Every method a store has, but building it gives something else.
    def __new__(cls, configuration, cache):
        return "not a store"
    def get_resource_metadata(self, query):
        return None
    def download_resource(self, metadata, dest):
        return None
    def download_resource_content(self, metadata, dest):
        return None

class ImpostorCache:
    # Every method a cache has, but building it gives something else.
    def __new__(cls, configuration):
        return "not a cache"
    def get(self, uid, default=None):
        return default
    def set(self, uid, value, timeout=0):
        return False
    def delete(self, uid):
        pass
    def clear(self):
        pass
    def has_resource(self, uid):
        return False
    def __contains__(self, uid):
        return False
    def get_expiry_time(self, timeout):
        return 0.0
    def close(self):
        pass
"""


@pytest.fixture
def extra_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Register test drivers as an installed distribution: a dist-info on sys.path."""
    (tmp_path / "e3ts_bad_drivers.py").write_text(BAD_DRIVERS)
    (tmp_path / "e3ts_broken_driver.py").write_text("raise ImportError('boom')\n")
    dist = tmp_path / "e3ts_test_plugins-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: e3ts-test-plugins\nVersion: 0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""\
            [{STORE_NAMESPACE}]
            no-content = e3ts_bad_drivers:NoContent
            wrong-names = e3ts_bad_drivers:WrongNames
            not-a-class = e3ts_bad_drivers:NOT_A_CLASS
            broken = e3ts_broken_driver:Broken
            copy-store = tests.backends.drivers:CopyStore
            impostor = e3ts_bad_drivers:ImpostorStore
            twice = e3ts_bad_drivers:ImpostorStore
            [{CACHE_NAMESPACE}]
            not-a-cache = e3ts_bad_drivers:WrongNames
            impostor = e3ts_bad_drivers:ImpostorCache
            """
        )
    )
    # A second distribution registering a name the first one has too.
    second = tmp_path / "e3ts_more_plugins-0.0.dist-info"
    second.mkdir()
    (second / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: e3ts-more-plugins\nVersion: 0.0\n"
    )
    (second / "entry_points.txt").write_text(
        f"[{STORE_NAMESPACE}]\ntwice = tests.backends.drivers:CopyStore\n"
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    # stevedore remembers each namespace's entry points for the life of the
    # process; a distribution installed after that is seen by a new one only.
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})
    yield tmp_path
    sys.modules.pop("e3ts_bad_drivers", None)


def test_package_exports_loaders() -> None:
    assert e3_typed_store.load_store is load_store
    assert e3_typed_store.load_cache is load_cache


def test_the_cache_package_exports_load_cache_as_e3s_does() -> None:
    import e3_typed_store.cache
    from e3_typed_store.cache import load_cache as from_cache_package

    assert from_cache_package is load_cache
    assert "load_cache" in dir(e3_typed_store.cache)
    with pytest.raises(AttributeError, match="no attribute 'load_store'"):
        getattr(e3_typed_store.cache, "load_store")  # noqa: B009 - asked by name


LOADER_ON_DEMAND = """
import sys
import e3_typed_store.backends.base
import e3_typed_store.cache.backends.filecache
print("e3_typed_store._plugins" in sys.modules)
from e3_typed_store import load_store
print("e3_typed_store._plugins" in sys.modules, load_store.__module__)
"""

CACHE_LOADER_ON_DEMAND = """
import sys
import e3_typed_store.cache.backends.memory
print("e3_typed_store._plugins" in sys.modules)
from e3_typed_store.cache import load_cache
print("e3_typed_store._plugins" in sys.modules, load_cache.__module__)
"""


@pytest.mark.parametrize(
    "code", [LOADER_ON_DEMAND, CACHE_LOADER_ON_DEMAND], ids=["package", "cache"]
)
def test_the_loader_is_imported_when_first_asked_for(code: str) -> None:
    # A store or cache module used directly does not pay for the loader.
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "e3_typed_store._plugins"]


def test_own_drivers_are_registered() -> None:
    assert "http-simple-store" in driver_names(STORE_NAMESPACE)
    assert {"file-cache", "memory-cache"} <= set(driver_names(CACHE_NAMESPACE))


def test_load_memory_cache() -> None:
    cache = load_cache("memory-cache")
    assert isinstance(cache, MemoryCache)


def test_load_file_cache(tmp_path: Path) -> None:
    from e3_typed_store.cache.backends.filecache import FileCache

    cache = load_cache("file-cache", {"cache_dir": str(tmp_path)})
    assert isinstance(cache, FileCache)
    assert cache.cache_dir == str(tmp_path)


def test_unknown_name_lists_installed() -> None:
    with pytest.raises(PluginError) as raised:
        load_cache("no-such-cache")
    assert raised.value.name == "no-such-cache"
    assert "memory-cache" in str(raised.value)


@pytest.mark.usefixtures("extra_plugins")
def test_a_driver_that_builds_something_else_is_refused() -> None:
    with pytest.raises(PluginError, match="does not build a store") as raised:
        load_store("impostor", {}, MemoryCache())
    assert raised.value.name == "impostor"
    with pytest.raises(PluginError, match="does not build a cache"):
        load_cache("impostor", {})


@pytest.mark.usefixtures("extra_plugins")
def test_a_name_registered_twice_is_refused() -> None:
    with pytest.raises(PluginError, match="registered more than once") as raised:
        load_store("twice", {}, MemoryCache())
    assert raised.value.name == "twice"


@pytest.mark.usefixtures("extra_plugins")
def test_a_conforming_third_party_store_loads(tmp_path: Path) -> None:
    from tests.backends.drivers import CopyConfig

    store = load_store("copy-store", CopyConfig(str(tmp_path)), MemoryCache())
    # An erased type statically (see docs/typing.md); the real class at run time.
    loaded: object = store
    assert isinstance(loaded, CopyStore)


@pytest.mark.usefixtures("extra_plugins")
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-content", "missing method download_resource_content()"),
        ("wrong-names", "get_resource_metadata() takes (q), expected (query)"),
        ("not-a-class", "is not a class"),
        ("broken", "cannot be imported"),
    ],
)
def test_non_conforming_store_is_refused(name: str, message: str) -> None:
    with pytest.raises(PluginError) as raised:
        load_store(name, {}, None)
    assert message in str(raised.value)
    assert raised.value.namespace == STORE_NAMESPACE


@pytest.mark.usefixtures("extra_plugins")
def test_non_conforming_cache_is_refused() -> None:
    with pytest.raises(PluginError, match=r"missing method get\(\)"):
        load_cache("not-a-cache")


def test_check_driver_reports_abstract_methods() -> None:
    from e3_typed_store.backends.base import Store

    problems = check_driver(Store, STORE_API)
    assert problems == [
        "abstract methods not implemented: download_resource_content,"
        " get_resource_metadata"
    ]
    assert check_driver(MemoryCache, CACHE_API) == []


def test_e3_core_loads_our_cache_by_name(tmp_path: Path) -> None:
    cache = e3.store.cache.load_cache("typed-file-cache", {"cache_dir": str(tmp_path)})
    from e3_typed_store.cache.backends.filecache import FileCache

    # e3-core's stubbed Cache and ours differ in signatures: widen, then check.
    loaded: object = cache
    assert isinstance(loaded, FileCache)


def test_load_store_with_an_expected_class() -> None:
    from e3_typed_store.backends.http_simple_store import HTTPSimpleStore

    store = load_store("http-simple-store", {}, None, expect=HTTPSimpleStore)
    assert isinstance(store, HTTPSimpleStore)
    with pytest.raises(PluginError, match="not the expected MemoryCache"):
        load_store("http-simple-store", {}, None, expect=MemoryCache)


def test_load_store_checks_the_drivers_configuration() -> None:
    from e3_typed_store.errors import InvalidConfigurationError

    with pytest.raises(InvalidConfigurationError, match="retries"):
        load_store("http-simple-store", {"retries": -1}, None)
