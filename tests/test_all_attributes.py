"""Every public module's __all__ is sorted, complete and names what exists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType
from typing import TypeVar

import pytest

import e3_typed_store


def public_modules() -> list[ModuleType]:
    modules = [e3_typed_store]
    for found in pkgutil.walk_packages(e3_typed_store.__path__, "e3_typed_store."):
        if not any(part.startswith("_") for part in found.name.split(".")):
            modules.append(importlib.import_module(found.name))
    return modules


def is_package(module: ModuleType) -> bool:
    return hasattr(module, "__path__")


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_all_is_sorted_and_resolves(module: ModuleType) -> None:
    if not hasattr(module, "__all__"):
        assert is_package(module)  # backends/, cache/backends/: nothing of theirs
        return
    exported: list[str] = module.__all__
    assert exported == sorted(exported), f"{module.__name__}.__all__ is not sorted"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == [], f"{module.__name__}.__all__ names what does not exist"


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_public_definitions_are_exported(module: ModuleType) -> None:
    if not hasattr(module, "__all__"):
        return
    exported = set(module.__all__)
    defined = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and not isinstance(value, TypeVar)
        and name not in exported
    ]
    assert defined == [], f"{module.__name__} defines {defined} without exporting them"


def test_package_lists_its_names_before_they_are_loaded() -> None:
    # dir() and the star import see the names the package imports on demand.
    code = (
        "import e3_typed_store as p\n"
        "print(sorted(set(p.__all__) - set(dir(p))))\n"
        "names = {}\n"
        "exec('from e3_typed_store import *', names)\n"
        "print(sorted(set(p.__all__) - set(names)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "[]"]


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = e3_typed_store.no_such_name


def test_seed_names_are_in_the_base_module() -> None:
    from e3_typed_store.backends import base

    seed = {"logger", "ResourceInfo", "CachedResource", "StoreError", "Store"}
    assert seed <= set(base.__all__)
    assert {
        "get_resource_metadata",
        "download_resource",
        "download_resource_content",
    } <= set(dir(base.Store))


@pytest.mark.parametrize(
    "module",
    [module for module in public_modules() if hasattr(module, "__all__")],
    ids=lambda m: m.__name__,
)
def test_public_classes_and_functions_say_when_they_were_added(
    module: ModuleType,
) -> None:
    exported: list[str] = module.__all__
    undated = [
        name
        for name in exported
        if (
            inspect.isclass(value := getattr(module, name)) or inspect.isfunction(value)
        )
        and str(getattr(value, "__module__", "")).startswith("e3_typed_store")
        and ".. versionadded::" not in (value.__doc__ or "")
    ]
    assert undated == [], f"{module.__name__}: no versionadded in {undated}"
