"""Subprocess side of the benchmark: ``python -m bench.worker MODE ...``.

Modes (each prints one JSON line on stdout at the end):

- ``concurrent IMPL URL SHA256 SHA1 CACHE DEST``: import everything, print
  ``ready``, wait for ``go`` on stdin, fetch once with IMPL (``ours`` or ``e3``)
  into DEST with the shared CACHE;
- ``hit-loop URL SHA256 CACHE DEST OPS``: fetch once (untimed), then time OPS
  stat-trusted cache hits with a fresh store object each;
- ``http-stack URL SHA256 CACHE DEST``: do one cache hit (CACHE must already
  hold the resource) and tell which HTTP modules were imported, and when.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # For annotations only: this process times and reports its own imports.
    from e3_typed_store.backends.http_simple_store import (
        HTTPSimpleQuery,
        HTTPSimpleStoreConfiguration,
    )

_HTTP_MODULES = ("requests", "urllib3", "http.client")


# No progress bar, as e3-core draws none by default.
_CONFIG: HTTPSimpleStoreConfiguration = {"progress": False}


def _loaded() -> list[str]:
    return [name for name in _HTTP_MODULES if name in sys.modules]


def _concurrent(
    impl: str, url: str, sha256: str, sha1: str, cache: str, dest: str
) -> dict[str, object]:
    if impl == "ours":
        from e3_typed_store.backends.base import StoreOptions
        from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
        from e3_typed_store.cache.backends.filecache import FileCache

        ours = HTTPSimpleStore(
            _CONFIG, FileCache({"cache_dir": cache}), options=StoreOptions()
        )

        # The HTTP layer is imported lazily, by the first download; imported
        # here, before the start line, as e3-core's is by its driver module:
        # the timed part is the fetch, not the import.
        import e3_typed_store._http  # noqa: F401

        def fetch() -> str | None:
            return ours.fetch_resource(
                ours.get_resource_metadata({"url": url, "sha256": sha256}), dest
            )
    else:
        from e3.store.backends.http_simple_store import HTTPSimpleStore as E3Store
        from e3.store.cache.backends.filecache import FileCache as E3FileCache

        theirs = E3Store({}, E3FileCache({"cache_dir": cache}))

        def fetch() -> str | None:
            path: str | None = theirs.download_resource(
                theirs.get_resource_metadata({"url": url, "sha": sha1}), dest
            )
            return path

        # What a first call imports lazily, imported before the start line.
        import e3.net.http  # noqa: F401

    os.makedirs(dest, exist_ok=True)  # e3-core needs it to exist
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return {"error": "no go"}
    start = time.perf_counter()
    try:
        path = fetch()
        error = None
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        path, error = None, f"{type(exc).__name__}: {exc}"
    return {"path": path, "seconds": time.perf_counter() - start, "error": error}


def _hit_loop(
    url: str, sha256: str, cache: str, dest: str, ops: int
) -> dict[str, object]:
    from e3_typed_store import runtime_checks_enabled
    from e3_typed_store.backends.base import StoreOptions
    from e3_typed_store.backends.http_simple_store import HTTPSimpleStore
    from e3_typed_store.cache.backends.filecache import FileCache

    options = StoreOptions(trust_unchanged_files=True)
    query: HTTPSimpleQuery = {"url": url, "sha256": sha256}

    def hit() -> str:
        store = HTTPSimpleStore(
            _CONFIG, FileCache({"cache_dir": cache}), options=options
        )
        return store.fetch_resource(store.get_resource_metadata(query), dest)

    hit()  # the download, then a first hit, untimed
    hit()
    start = time.perf_counter()
    for _ in range(ops):
        hit()
    per_op = (time.perf_counter() - start) / ops
    return {"per_op": per_op, "runtime_checks": runtime_checks_enabled()}


def _http_stack(url: str, sha256: str, cache: str, dest: str) -> dict[str, object]:
    at_start = _loaded()
    from e3_typed_store.backends.base import StoreOptions
    from e3_typed_store.cache.backends.filecache import FileCache

    after_base = _loaded()
    from e3_typed_store.backends.http_simple_store import HTTPSimpleStore

    after_driver = _loaded()
    store = HTTPSimpleStore(
        _CONFIG, FileCache({"cache_dir": cache}), options=StoreOptions(offline=True)
    )
    path = store.fetch_resource(
        store.get_resource_metadata({"url": url, "sha256": sha256}), dest
    )
    after_hit = _loaded()
    return {
        "path": path,
        "at_start": at_start,
        "after_base_and_cache_import": after_base,
        "after_driver_import": after_driver,
        "after_hit": after_hit,
        "imported_by_hit": [m for m in after_hit if m not in after_driver],
    }


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "concurrent":
        result = _concurrent(*args)
    elif mode == "hit-loop":
        result = _hit_loop(args[0], args[1], args[2], args[3], int(args[4]))
    elif mode == "http-stack":
        result = _http_stack(*args)
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
