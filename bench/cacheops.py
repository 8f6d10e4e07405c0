"""Per-operation cost of cache backends: set, get (hit) and get (miss)."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.timing import Contender

__all__ = ["BACKENDS", "OPS", "cache_contenders", "op_name"]

BACKENDS = ["e3-typed-store FileCache", "e3-core FileCache", "diskcache"]
OPS = ["set", "get", "miss"]


def op_name(backend: str, op: str) -> str:
    return f"{backend}: {op}"


@dataclass
class _Backend:
    """A cache made fresh per repetition: ``make(dir)`` -> (set, get, close)."""

    name: str
    make: Callable[
        [str],
        tuple[
            Callable[[str, str], object], Callable[[str], object], Callable[[], None]
        ],
    ]
    skipped: str | None = None


def _ours(
    directory: str,
) -> tuple[Callable[[str, str], object], Callable[[str], object], Callable[[], None]]:
    from e3_typed_store.backends.base import CachedResource
    from e3_typed_store.cache.backends.filecache import FileCache

    cache = FileCache({"cache_dir": directory})
    return (
        lambda uid, path: cache.set(uid, CachedResource(uid, path)),
        cache.get,
        cache.close,
    )


def _e3(
    directory: str,
) -> tuple[Callable[[str, str], object], Callable[[str], object], Callable[[], None]]:
    from e3.store.backends.base import CachedResource
    from e3.store.cache.backends.filecache import FileCache

    cache = FileCache({"cache_dir": directory})
    return (
        lambda uid, path: cache.set(uid, CachedResource(uid, path)),
        cache.get,
        cache.close,
    )


def _diskcache(
    directory: str,
) -> tuple[Callable[[str, str], object], Callable[[str], object], Callable[[], None]]:
    import diskcache

    cache = diskcache.Cache(directory)
    return (
        lambda uid, path: cache.set(uid, (uid, path), expire=86400),
        cache.get,
        cache.close,
    )


def _backends() -> list[_Backend]:
    found = importlib.util.find_spec("diskcache") is not None
    return [
        _Backend(BACKENDS[0], _ours),
        _Backend(BACKENDS[1], _e3),
        _Backend(
            BACKENDS[2],
            _diskcache,
            None
            if found
            else "skipped: diskcache not installed (pip install '.[bench]')",
        ),
    ]


def cache_contenders(work: str, ops: int) -> list[Contender]:
    """Nine contenders (three backends x set/get/miss), each timing *ops* calls
    and answering seconds per call.
    """
    uids = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(ops)]
    missing = [hashlib.sha1(f"missing {i}".encode()).hexdigest() for i in range(ops)]
    paths = [f"{work}/downloads/resource-{i}.tar.gz" for i in range(ops)]
    contenders: list[Contender] = []
    for backend in _backends():
        for op in OPS:
            state: dict[str, object] = {}

            def prepare(
                backend: _Backend = backend,
                op: str = op,
                state: dict[str, object] = state,
            ) -> None:
                directory = tempfile.mkdtemp(prefix="cacheops.", dir=work)
                set_, get, close = backend.make(directory)
                if op != "set":
                    for uid, path in zip(uids, paths, strict=True):
                        set_(uid, path)
                state.update(dir=directory, set=set_, get=get, close=close)

            def run(op: str = op, state: dict[str, object] = state) -> float:
                start = time.perf_counter()
                if op == "set":
                    set_ = state["set"]
                    assert callable(set_)
                    for uid, path in zip(uids, paths, strict=True):
                        set_(uid, path)
                else:
                    get = state["get"]
                    assert callable(get)
                    for uid in uids if op == "get" else missing:
                        get(uid)
                return (time.perf_counter() - start) / ops

            def check(
                op: str = op, state: dict[str, object] = state, name: str = backend.name
            ) -> None:
                get = state["get"]
                assert callable(get)
                found = get(uids[0])
                if op == "miss":
                    found = get(missing[0])
                    if found is not None:
                        raise RuntimeError(f"{name}: a miss answered {found!r}")
                elif found is None:
                    raise RuntimeError(f"{name}: no entry after set")

            def cleanup(state: dict[str, object] = state) -> None:
                close = state.pop("close", None)
                if callable(close):
                    close()
                directory = state.pop("dir", None)
                if isinstance(directory, str):
                    shutil.rmtree(directory, ignore_errors=True)

            contenders.append(
                Contender(
                    op_name(backend.name, op),
                    run,
                    prepare=prepare,
                    check=check,
                    cleanup=cleanup,
                    skipped=backend.skipped,
                )
            )
    return contenders
