# The part of tqdm e3-typed-store uses: a bar driven by hand with update().
# Parameters are typed for what tqdm accepts; the iterable form is left
# ``object`` since the library never iterates a bar.
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

from typing_extensions import Self

class _Writable(Protocol):
    def write(self, s: str, /) -> object: ...

class tqdm:
    # __new__ takes what __init__ takes (at run time, anything).
    def __new__(
        cls,
        iterable: object = None,
        desc: str | None = None,
        total: float | None = None,
        leave: bool | None = True,
        file: _Writable | None = None,
        ncols: int | None = None,
        mininterval: float = 0.1,
        maxinterval: float = 10.0,
        miniters: float | None = None,
        ascii: bool | str | None = None,
        disable: bool | None = False,
        unit: str = "it",
        unit_scale: bool | float = False,
        dynamic_ncols: bool = False,
        smoothing: float = 0.3,
        bar_format: str | None = None,
        initial: float = 0,
        position: int | None = None,
        postfix: Mapping[str, object] | str | None = None,
        unit_divisor: float = 1000,
        write_bytes: bool = False,
        lock_args: tuple[bool | None, float | None] | tuple[bool | None] | None = None,
        nrows: int | None = None,
        colour: str | None = None,
        delay: float | None = 0.0,
        gui: bool = False,
        **kwargs: object,
    ) -> Self: ...
    def __init__(
        self,
        iterable: object = None,
        desc: str | None = None,
        total: float | None = None,
        leave: bool | None = True,
        file: _Writable | None = None,
        ncols: int | None = None,
        mininterval: float = 0.1,
        maxinterval: float = 10.0,
        miniters: float | None = None,
        ascii: bool | str | None = None,
        disable: bool | None = False,
        unit: str = "it",
        unit_scale: bool | float = False,
        dynamic_ncols: bool = False,
        smoothing: float = 0.3,
        bar_format: str | None = None,
        initial: float = 0,
        position: int | None = None,
        postfix: Mapping[str, object] | str | None = None,
        unit_divisor: float = 1000,
        write_bytes: bool = False,
        lock_args: tuple[bool | None, float | None] | tuple[bool | None] | None = None,
        nrows: int | None = None,
        colour: str | None = None,
        delay: float | None = 0.0,
        gui: bool = False,
        **kwargs: object,
    ) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
    def update(self, n: float | None = 1) -> bool | None: ...
    def reset(self, total: float | None = None) -> None: ...
    def close(self) -> None: ...
    @classmethod
    def external_write_mode(
        cls, file: _Writable | None = None, nolock: bool = False
    ) -> AbstractContextManager[None]: ...
