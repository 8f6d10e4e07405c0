"""The typing_extensions stand-ins of _types behave as typing_extensions'."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from typing import Generic, get_args

import pytest

from e3_typed_store._types import CachedResource, TypeVar, override
from e3_typed_store.cache.backends.base import Cache, CacheConfiguration

FirstT = TypeVar("FirstT", bound=int, default=bool)
SecondT_contra = TypeVar("SecondT_contra", contravariant=True, default=str)
ThirdT = TypeVar("ThirdT", default=bytes)


class Triple(Generic[FirstT, SecondT_contra, ThirdT]):
    pass


def test_type_variable_keeps_its_declaration() -> None:
    assert FirstT.__name__ == "FirstT"
    assert FirstT.__bound__ is int
    assert SecondT_contra.__contravariant__
    # typing.TypeVar of Python 3.10, which the type checkers read, has neither.
    assert getattr(FirstT, "__default__", None) is bool
    has_default: object = getattr(FirstT, "has_default", None)
    assert callable(has_default)
    assert has_default() is True
    # Credited to the module that declared it, which is how pickle finds it.
    assert FirstT.__module__ == __name__
    assert pickle.loads(pickle.dumps(FirstT)) is FirstT


def test_missing_arguments_take_their_defaults() -> None:
    assert get_args(Triple[int]) == (int, str, bytes)
    assert get_args(Triple[int, float]) == (int, float, bytes)
    assert get_args(Triple[int, float, None]) == (int, float, type(None))


def test_a_subclass_may_name_fewer_arguments_or_none() -> None:
    class Fewer(Triple[int, float]):
        pass

    class Bare(Triple):
        pass

    assert issubclass(Fewer, Triple)
    assert issubclass(Bare, Triple)


def test_package_generics_take_their_defaults() -> None:
    class Strings(Cache[str]):
        @override
        def get(self, uid: str, default: str | None = None) -> str | None:
            return default

        @override
        def set(self, uid: str, value: str, timeout: int = 0) -> bool:
            return False

        @override
        def delete(self, uid: str) -> None:
            pass

        @override
        def clear(self) -> None:
            pass

    assert Cache[str] == Cache[str, CacheConfiguration]
    assert get_args(Cache[CachedResource]) == (CachedResource, CacheConfiguration)
    assert Strings(None).get("uid", "hit") == "hit"


def test_override_marks_the_method() -> None:
    class Base:
        def method(self) -> int:
            return 1

    class Derived(Base):
        @override
        def method(self) -> int:
            return 2

    assert getattr(Derived.method, "__override__", False) is True
    assert Derived().method() == 2


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="typing_extensions patches typing on 3.10"
)
def test_base_and_cache_modules_do_not_import_typing_extensions() -> None:
    code = (
        "import sys\n"
        "import e3_typed_store.errors\n"
        "import e3_typed_store.backends.base\n"
        "import e3_typed_store.cache.backends.filecache\n"
        "import e3_typed_store.cache.backends.memory\n"
        "print('typing_extensions' in sys.modules)\n"
    )
    env: Mapping[str, str] = {
        k: v for k, v in os.environ.items() if k != "E3_TYPED_STORE_RUNTIME_CHECKS"
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]
