"""beartype enforces every annotated signature of the package in the test run."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType, ModuleType

import pytest
from beartype.roar import BeartypeCallHintParamViolation

import e3_typed_store
from e3_typed_store.cache.backends.memory import MemoryCache
from tests.backends.drivers import CopyConfig, CopyStore


def package_modules() -> Iterator[ModuleType]:
    yield e3_typed_store
    for found in pkgutil.walk_packages(e3_typed_store.__path__, "e3_typed_store."):
        yield importlib.import_module(found.name)


def checkable(func: FunctionType, module: ModuleType) -> bool:
    """Written in *module*, with a hint beartype can check (not only ``object``)."""
    if func.__code__.co_filename != module.__file__:
        return False  # generated, e.g. NamedTuple's _make
    return any(hint not in ("object", object) for hint in func.__annotations__.values())


def unwrap_descriptor(member: object) -> object:
    """The function behind a property, staticmethod or classmethod."""
    if isinstance(member, property):
        return member.fget
    inner: object = getattr(member, "__func__", member)  # staticmethod, classmethod
    return inner


def own_functions(module: ModuleType) -> Iterator[tuple[str, FunctionType]]:
    """Functions and methods of *module* in which beartype has something to check."""
    for name, value in vars(module).items():
        if isinstance(value, FunctionType) and checkable(value, module):
            yield name, value
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            for attr, member in vars(value).items():
                func = unwrap_descriptor(member)
                if isinstance(func, FunctionType) and checkable(func, module):
                    yield f"{name}.{attr}", func


def test_checks_are_on_in_the_test_run() -> None:
    assert e3_typed_store.runtime_checks_enabled()


def test_wrong_argument_type_is_a_violation_naming_the_parameter() -> None:
    cache: MemoryCache[object] = MemoryCache()
    with pytest.raises(BeartypeCallHintParamViolation, match="uid"):
        cache.get(json.loads("42"))


def test_store_rejects_a_cache_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(BeartypeCallHintParamViolation, match="cache_backend"):
        CopyStore(CopyConfig(str(tmp_path)), json.loads('{"not": "a cache"}'))


@pytest.mark.parametrize("module", list(package_modules()), ids=lambda m: m.__name__)
def test_every_function_of_the_package_is_decorated(module: ModuleType) -> None:
    undecorated = [
        name for name, func in own_functions(module) if not hasattr(func, "__wrapped__")
    ]
    assert undecorated == [], (
        f"beartype did not decorate {undecorated} in {module.__name__}"
    )


def run_python(
    code: str, checks: bool, value: str = "1"
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("E3_TYPED_STORE_RUNTIME_CHECKS", None)
    if checks:
        env["E3_TYPED_STORE_RUNTIME_CHECKS"] = value
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


IMPORT_ALL = """
import importlib, pkgutil, sys
import e3_typed_store
for found in pkgutil.walk_packages(e3_typed_store.__path__, "e3_typed_store."):
    importlib.import_module(found.name)
print(e3_typed_store.runtime_checks_enabled(), "beartype" in sys.modules)
"""


def test_without_opt_in_beartype_is_not_imported() -> None:
    result = run_python(IMPORT_ALL, checks=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("value", ["1", "true", "Yes", " on "])
def test_opt_in_turns_checks_on(value: str) -> None:
    # The words E3_TYPED_STORE_OFFLINE takes, too.
    result = run_python(IMPORT_ALL, checks=True, value=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("value", ["0", "off", "no", ""])
def test_other_values_leave_checks_off(value: str) -> None:
    result = run_python(IMPORT_ALL, checks=True, value=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


BAD_QUERY = """
from e3_typed_store._query import required_str
from e3_typed_store.errors import InvalidQueryError
try:
    required_str({{"url": 3}}, {key})
except InvalidQueryError as exc:
    print(type(exc).__name__, exc)
except Exception as exc:
    print(type(exc).__name__)
"""


def test_bad_input_without_checks_is_a_store_error() -> None:
    result = run_python(BAD_QUERY.format(key='"url"'), checks=False)
    assert result.stdout.startswith("InvalidQueryError invalid query: 'url'=3")


def test_bad_input_with_checks_is_a_violation() -> None:
    result = run_python(BAD_QUERY.format(key="7"), checks=True)
    assert result.stdout.strip() == "BeartypeCallHintParamViolation"


NUMERIC_TOWER = """
from e3_typed_store.backends.base import StoreOptions
print(StoreOptions(lock_timeout=5).lock_timeout)
try:
    StoreOptions(lock_timeout="5")
except Exception as exc:
    print(type(exc).__name__)
"""


def test_checks_let_an_int_pass_for_a_float_as_type_checkers_do() -> None:
    # mypy and pyright accept StoreOptions(lock_timeout=5): so must the
    # runtime checks, while a str is still refused.
    result = run_python(NUMERIC_TOWER, checks=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "BeartypeCallHintParamViolation"]


NO_CACHE_CONFIGURATION = """
from e3_typed_store import load_cache
from e3_typed_store.cache.backends.filecache import FileCache
for build in (lambda: FileCache(None), load_cache):  # e3-core's default: None
    try:
        build()
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_a_file_cache_without_configuration_without_checks() -> None:
    result = run_python(NO_CACHE_CONFIGURATION, checks=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        error, message = line.split(" ", 1)
        assert error == "InvalidConfigurationError"
        assert message.startswith("invalid configuration: 'cache_configuration'=None")
        assert "{'cache_dir': '/path/to/cache'}" in line


def test_a_file_cache_without_configuration_with_checks() -> None:
    result = run_python(NO_CACHE_CONFIGURATION, checks=True)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == ["BeartypeCallHintParamViolation"] * 2


HAND_BUILT_METADATA = """
from e3_typed_store.backends.http_simple_store import HTTPSimpleStoreResourceInfo
for args in (("http://h/a", None), ("http://h/a", 5), (None, "a" * 40)):
    try:
        HTTPSimpleStoreResourceInfo(*args)
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_metadata_built_by_hand_with_a_none_is_a_store_error() -> None:
    # e3-core's positional form, HTTPSimpleStoreResourceInfo(url, sha), with a
    # value missing: checks off, the error still names the argument.
    result = run_python(HAND_BUILT_METADATA, checks=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "InvalidQueryError invalid query: 'sha'=None: expected a string, got NoneType",
        "InvalidQueryError invalid query: 'sha'=5: expected a string, got int",
        "InvalidQueryError invalid query: 'url'=None: expected a string, got NoneType",
    ]


PATH_DEST = """
import hashlib, pathlib, sys, tempfile
from e3_typed_store.backends.file_store import FileStore
root = pathlib.Path(tempfile.mkdtemp())
(root / "a.bin").write_bytes(b"payload")
store = FileStore({"root": str(root)}, None)
info = store.get_resource_metadata(
    {"path": "a.bin", "sha256": hashlib.sha256(b"payload").hexdigest()}
)
for get in (store.download_resource, store.fetch_resource):
    placed = get(info, root / "dest")
    print(type(placed).__name__, pathlib.Path(placed).read_bytes() == b"payload")
"""


def test_a_path_as_dest_is_taken_without_checks() -> None:
    # e3-core took a pathlib.Path as dest; the types say str, beartype too.
    result = run_python(PATH_DEST, checks=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["str", "True", "str", "True"]
    checked = run_python(PATH_DEST, checks=True)
    assert "BeartypeCallHintParamViolation" in checked.stderr


NOT_BOOLEANS = """
from e3_typed_store.backends.base import StoreOptions
for field in ("offline", "trust_unchanged_files"):
    try:
        StoreOptions(**{field: 1})
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


def test_options_built_directly_refuse_a_1_for_a_boolean_without_checks() -> None:
    # from_configuration refused it; built directly, a 1 turned offline on.
    result = run_python(NOT_BOOLEANS, checks=False)
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "InvalidConfigurationError invalid configuration",
        "InvalidConfigurationError invalid configuration",
    ]
    assert "'offline'=1" in result.stdout
    assert "'trust_unchanged_files'=1" in result.stdout


NO_METADATA = """
from e3_typed_store.backends.file_store import FileStore
from e3_typed_store.errors import StoreError
store = FileStore({"root": "/"}, None)
print(store.download_resource("not metadata", "/tmp"))
try:
    store.fetch_resource("not metadata", "/tmp")
except StoreError as exc:
    print(type(exc).__name__, exc)
"""


def test_what_is_no_metadata_is_a_store_error_without_checks() -> None:
    # A driver whose get_resource_metadata returns something else: the
    # store's error, not an AttributeError from inside.
    result = run_python(NO_METADATA, checks=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "None",
        "StoreError no resource metadata, its uid is None: 'not metadata'",
    ]
