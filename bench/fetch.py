"""Fetch contenders: the bounds, this library, e3-core, pooch."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable

from bench.data import DataFile
from bench.native import NATIVE_FETCH, NATIVE_INLINE, NATIVE_RAW, Mode, NativeClient
from bench.timing import Contender

__all__ = [
    "RAW",
    "RAW_SHA256",
    "CURL",
    "OURS_COLD",
    "OURS_WARM",
    "OURS_TRUSTED",
    "OURS_WARM_SHA1",
    "HASH_SHA1",
    "WRITE",
    "HASH_SHA256",
    "HASH_MEMORY",
    "E3_COLD",
    "E3_WARM",
    "POOCH_COLD",
    "POOCH_WARM",
    "RAW_TLS",
    "OURS_COLD_TLS",
    "FETCH_NAMES",
    "fetch_contenders",
    "e3_fetcher",
    "ours_fetcher",
]

RAW = "raw transfer (requests -> file, no hash)"
RAW_SHA256 = "raw transfer + sha256 inline (one pass, one thread)"
CURL = "curl | openssl dgst -sha256"
OURS_COLD = "e3-typed-store cold"
OURS_WARM = "e3-typed-store warm, verified hit"
OURS_WARM_SHA1 = "e3-typed-store warm, verified hit (sha1 query)"
OURS_TRUSTED = "e3-typed-store warm, stat-trusted hit"
HASH_SHA256 = "hash pass, hashlib sha256"
HASH_SHA1 = "hash pass, hashlib sha1"
HASH_MEMORY = "sha256 of the payload in memory (no file, no network)"
WRITE = "write pass (memory -> new file, no network)"
E3_COLD = "e3-core cold"
E3_WARM = "e3-core warm (verified hit)"
POOCH_COLD = "pooch cold"
POOCH_WARM = "pooch warm (verified hit)"
RAW_TLS = "raw transfer over HTTPS (requests -> file, no hash)"
OURS_COLD_TLS = "e3-typed-store cold over HTTPS"
FETCH_NAMES = [
    RAW,
    RAW_SHA256,
    CURL,
    NATIVE_RAW,
    NATIVE_FETCH,
    NATIVE_INLINE,
    HASH_SHA256,
    HASH_SHA1,
    HASH_MEMORY,
    WRITE,
    OURS_COLD,
    OURS_WARM,
    OURS_WARM_SHA1,
    OURS_TRUSTED,
    E3_COLD,
    E3_WARM,
    POOCH_COLD,
    POOCH_WARM,
    RAW_TLS,
    OURS_COLD_TLS,
]

_CHUNK = 1 << 20
_TIMEOUT = 120


def file_sha256(path: str, algorithm: str = "sha256") -> str:
    """Hash a file as fast as hashlib goes: unbuffered reads into one buffer."""
    digest = hashlib.new(algorithm)
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as stream:
        while size := stream.readinto(view):
            digest.update(view[:size])
    return digest.hexdigest()


class _Dirs:
    """A fresh directory per repetition under *work*, removed after it."""

    def __init__(self, work: str, stem: str) -> None:
        self.work = work
        self.stem = stem
        self.current = ""

    def new(self) -> None:
        self.current = tempfile.mkdtemp(prefix=self.stem + ".", dir=self.work)

    def drop(self) -> None:
        if self.current:
            shutil.rmtree(self.current, ignore_errors=True)
            self.current = ""


def _expect(path: str | None, data: DataFile, who: str) -> None:
    if path is None or not os.path.isfile(path):
        raise RuntimeError(f"{who} returned no file ({path!r})")
    if file_sha256(path) != data.sha256:
        raise RuntimeError(f"{who} returned a corrupted file: {path}")


def ours_fetcher(
    cache_dir: str, trust: bool, sha1: bool = False
) -> Callable[[str, DataFile, str], str]:
    """Return ``fetch(url, data, dest) -> path`` with a fresh store each call."""
    from e3_typed_store.backends.base import StoreOptions
    from e3_typed_store.backends.http_simple_store import (
        HTTPSimpleQuery,
        HTTPSimpleStore,
    )
    from e3_typed_store.cache.backends.filecache import FileCache

    options = StoreOptions(trust_unchanged_files=trust)

    def fetch(url: str, data: DataFile, dest: str) -> str:
        store = HTTPSimpleStore(
            {"progress": False}, FileCache({"cache_dir": cache_dir}), options=options
        )
        query: HTTPSimpleQuery = {"url": url}
        if sha1:
            query["sha"] = data.sha1
        else:
            query["sha256"] = data.sha256
        info = store.get_resource_metadata(query)
        return store.fetch_resource(info, dest)

    return fetch


def e3_fetcher(cache_dir: str) -> Callable[[str, DataFile, str], str | None]:
    from e3.store.backends.http_simple_store import HTTPSimpleStore
    from e3.store.cache.backends.filecache import FileCache

    def fetch(url: str, data: DataFile, dest: str) -> str | None:
        store = HTTPSimpleStore({}, FileCache({"cache_dir": cache_dir}))
        info = store.get_resource_metadata({"url": url, "sha": data.sha1})
        path: str | None = store.download_resource(info, dest)
        return path

    return fetch


def raw_contender(
    url: str, work: str, data: DataFile, hashed: bool, name: str | None = None
) -> Contender:
    import requests

    name = name or (RAW_SHA256 if hashed else RAW)
    dirs = _Dirs(work, "raw")
    out: list[str] = []
    # One session for all repetitions: its connection is kept open between
    # them, as this library keeps its own (see the page's method).
    session = requests.Session()

    def run() -> None:
        target = os.path.join(dirs.current, data.name)
        digest = hashlib.sha256()
        with session.get(url, stream=True, timeout=_TIMEOUT) as response:
            response.raise_for_status()
            with open(target, "wb") as stream:
                for chunk in response.iter_content(_CHUNK):
                    if hashed:
                        digest.update(chunk)
                    stream.write(chunk)
        if hashed and digest.hexdigest() != data.sha256:
            raise RuntimeError(f"{name}: wrong digest {digest.hexdigest()}")
        out[:] = [target]

    return Contender(
        name,
        run,
        prepare=dirs.new,
        check=lambda: _expect(out[0], data, name),
        cleanup=dirs.drop,
    )


def _curl(url: str, data: DataFile) -> Contender:
    missing = [tool for tool in ("curl", "openssl") if shutil.which(tool) is None]
    result: list[str] = []

    def run() -> None:
        done = subprocess.run(
            f"curl -sSf '{url}' | openssl dgst -sha256",
            shell=True,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=True,
        )
        result[:] = [done.stdout]

    def check() -> None:
        if data.sha256 not in result[0]:
            raise RuntimeError(f"curl | openssl printed {result[0]!r}")

    skipped = f"skipped: {' and '.join(missing)} not installed" if missing else None
    return Contender(CURL, run, check=check, skipped=skipped)


def _ours_cold(url: str, work: str, data: DataFile, name: str) -> Contender:
    """A cold fetch: a fresh store, an empty cache and an empty dest each time."""
    cold_cache = _Dirs(work, "ours-cold-cache")
    cold_dest = _Dirs(work, "ours-cold-dest")
    got: list[str] = []

    def cold() -> None:
        fetch = ours_fetcher(cold_cache.current, trust=False)
        got[:] = [fetch(url, data, cold_dest.current)]

    def new_cold() -> None:
        cold_cache.new()
        cold_dest.new()

    def drop_cold() -> None:
        cold_cache.drop()
        cold_dest.drop()

    return Contender(
        name,
        cold,
        prepare=new_cold,
        check=lambda: _expect(got[0] if got else None, data, name),
        cleanup=drop_cold,
    )


def _https(url: str | None, work: str, data: DataFile, why_not: str) -> list[Contender]:
    """The raw transfer and this library's cold fetch, over HTTPS."""
    if url is None:
        reason = f"skipped: no HTTPS server ({why_not})"
        return [
            Contender(name, lambda: None, skipped=reason)
            for name in (RAW_TLS, OURS_COLD_TLS)
        ]
    return [
        raw_contender(url, work, data, hashed=False, name=RAW_TLS),
        _ours_cold(url, work, data, OURS_COLD_TLS),
    ]


def _ours(url: str, work: str, data: DataFile) -> list[Contender]:
    try:
        ours_fetcher(work, trust=False)
    except ImportError as exc:
        reason = f"skipped: {exc}"
        return [
            Contender(name, lambda: None, skipped=reason)
            for name in (OURS_COLD, OURS_WARM, OURS_WARM_SHA1, OURS_TRUSTED)
        ]
    got: dict[str, str] = {}
    contenders = [_ours_cold(url, work, data, OURS_COLD)]
    for name, trust, sha1 in (
        (OURS_WARM, False, False),
        (OURS_WARM_SHA1, False, True),
        (OURS_TRUSTED, True, False),
    ):
        cache = tempfile.mkdtemp(prefix="ours-warm-cache.", dir=work)
        # Filled once, untimed: every repetition is a hit.
        ours_fetcher(cache, trust, sha1)(url, data, tempfile.mkdtemp(dir=work))
        dest = _Dirs(work, "ours-warm-dest")

        def warm(
            name: str = name,
            cache: str = cache,
            trust: bool = trust,
            sha1: bool = sha1,
            dest: _Dirs = dest,
        ) -> None:
            got[name] = ours_fetcher(cache, trust, sha1)(url, data, dest.current)

        def check(name: str = name) -> None:
            _expect(got.get(name), data, name)

        contenders.append(
            Contender(
                name,
                warm,
                prepare=dest.new,
                check=check,
                cleanup=dest.drop,
            )
        )
    return contenders


def _e3(url: str, work: str, data: DataFile) -> list[Contender]:
    cold_cache = _Dirs(work, "e3-cold-cache")
    cold_dest = _Dirs(work, "e3-cold-dest")
    got: dict[str, str | None] = {}

    def cold() -> None:
        got[E3_COLD] = e3_fetcher(cold_cache.current)(url, data, cold_dest.current)

    def new_cold() -> None:
        cold_cache.new()
        cold_dest.new()

    def drop_cold() -> None:
        cold_cache.drop()
        cold_dest.drop()

    warm_cache = tempfile.mkdtemp(prefix="e3-warm-cache.", dir=work)
    e3_fetcher(warm_cache)(url, data, tempfile.mkdtemp(dir=work))
    warm_dest = _Dirs(work, "e3-warm-dest")

    def warm() -> None:
        got[E3_WARM] = e3_fetcher(warm_cache)(url, data, warm_dest.current)

    return [
        Contender(
            E3_COLD,
            cold,
            prepare=new_cold,
            check=lambda: _expect(got.get(E3_COLD), data, E3_COLD),
            cleanup=drop_cold,
        ),
        Contender(
            E3_WARM,
            warm,
            prepare=warm_dest.new,
            check=lambda: _expect(got.get(E3_WARM), data, E3_WARM),
            cleanup=warm_dest.drop,
        ),
    ]


def _pooch(url: str, work: str, data: DataFile) -> list[Contender]:
    if importlib.util.find_spec("pooch") is None:
        reason = "skipped: pooch not installed (pip install '.[bench]')"
        return [
            Contender(name, lambda: None, skipped=reason)
            for name in (POOCH_COLD, POOCH_WARM)
        ]
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)
    known = f"sha256:{data.sha256}"
    cold_dir = _Dirs(work, "pooch-cold")
    got: dict[str, str] = {}

    def cold() -> None:
        got[POOCH_COLD] = pooch.retrieve(
            url, known, fname=data.name, path=cold_dir.current, progressbar=False
        )

    warm_dir = tempfile.mkdtemp(prefix="pooch-warm.", dir=work)
    pooch.retrieve(url, known, fname=data.name, path=warm_dir, progressbar=False)

    def warm() -> None:
        got[POOCH_WARM] = pooch.retrieve(
            url, known, fname=data.name, path=warm_dir, progressbar=False
        )

    return [
        Contender(
            POOCH_COLD,
            cold,
            prepare=cold_dir.new,
            check=lambda: _expect(got.get(POOCH_COLD), data, POOCH_COLD),
            cleanup=cold_dir.drop,
        ),
        Contender(
            POOCH_WARM,
            warm,
            check=lambda: _expect(got.get(POOCH_WARM), data, POOCH_WARM),
        ),
    ]


def _hash_passes(data: DataFile) -> list[Contender]:
    contenders = []
    for name, algorithm, expected in (
        (HASH_SHA256, "sha256", data.sha256),
        (HASH_SHA1, "sha1", data.sha1),
    ):
        result: list[str] = []

        def run(algorithm: str = algorithm, result: list[str] = result) -> None:
            result[:] = [file_sha256(data.path, algorithm)]

        def check(
            name: str = name, expected: str = expected, result: list[str] = result
        ) -> None:
            if result[0] != expected:
                raise RuntimeError(f"{name}: digest {result[0]}")

        contenders.append(Contender(name, run, check=check))
    return contenders


def _memory_hash(data: DataFile) -> Contender:
    """One SHA-256 pass over the payload already in memory: the floor of any
    cold fetch with a SHA-256 query, which must hash every byte, in order, on
    one core. The payload is read once, untimed, and kept for the size's
    repetitions.
    """
    payload: list[bytes] = []
    result: list[str] = []

    def prepare() -> None:
        if not payload:
            with open(data.path, "rb") as stream:
                payload.append(stream.read())

    def run() -> None:
        result[:] = [hashlib.sha256(payload[0]).hexdigest()]

    def check() -> None:
        if result[0] != data.sha256:
            raise RuntimeError(f"{HASH_MEMORY}: digest {result[0]}")

    return Contender(HASH_MEMORY, run, prepare=prepare, check=check)


def _native(
    native: NativeClient | str, url: str, work: str, data: DataFile
) -> list[Contender]:
    """The native bound's raw transfer and its fetches, overlapped and inline
    (bench/native.py), timed by the bound itself from its request to its file
    closed and its digest final.
    """
    modes: list[tuple[str, Mode]] = [
        (NATIVE_RAW, "raw"),
        (NATIVE_FETCH, "sha256"),
        (NATIVE_INLINE, "inline"),
    ]
    if isinstance(native, str):
        return [Contender(name, lambda: None, skipped=native) for name, _ in modes]
    contenders = []
    for name, mode in modes:
        dirs = _Dirs(work, "native")
        out: list[str] = []

        def run(
            name: str = name,
            mode: Mode = mode,
            dirs: _Dirs = dirs,
            out: list[str] = out,
        ) -> float:
            target = os.path.join(dirs.current, data.name)
            seconds, digest = native.transfer(url, target, mode)
            if mode != "raw" and digest != data.sha256:
                raise RuntimeError(f"{name}: wrong digest {digest}")
            out[:] = [target]
            return seconds

        def check(name: str = name, out: list[str] = out) -> None:
            _expect(out[0], data, name)

        contenders.append(
            Contender(name, run, prepare=dirs.new, check=check, cleanup=dirs.drop)
        )
    return contenders


def _write_pass(work: str, data: DataFile) -> Contender:
    """The payload's size written from memory into a new file, as the raw
    transfer writes it (1 MiB writes), with no network: what the file system
    and the memory cost alone.
    """
    dirs = _Dirs(work, "write")
    block = memoryview(random.Random(data.size).randbytes(_CHUNK))
    out: list[str] = []

    def run() -> None:
        target = os.path.join(dirs.current, data.name)
        with open(target, "wb") as stream:
            remaining = data.size
            while remaining > 0:
                remaining -= stream.write(block[: min(remaining, _CHUNK)])
        out[:] = [target]

    def check() -> None:
        if os.path.getsize(out[0]) != data.size:
            raise RuntimeError(f"{WRITE}: wrote {os.path.getsize(out[0])} bytes")

    return Contender(WRITE, run, prepare=dirs.new, check=check, cleanup=dirs.drop)


def fetch_contenders(
    url: str,
    work: str,
    data: DataFile,
    https_url: str | None = None,
    no_https: str = "not asked for",
    native: NativeClient | str = "skipped: not asked for",
) -> list[Contender]:
    """Every fetch contender for *data* served at *url*, in table order.

    :param work: a scratch directory (everything made here stays under it)
    :param https_url: where *data* is served over HTTPS, if it is
    :param no_https: why it is not, for the skipped rows
    :param native: the running native bound, or why there is none
    """
    by_name = {
        c.name: c
        for c in [
            raw_contender(url, work, data, hashed=False),
            raw_contender(url, work, data, hashed=True),
            _curl(url, data),
            *_native(native, url, work, data),
            *_hash_passes(data),
            _memory_hash(data),
            _write_pass(work, data),
            *_ours(url, work, data),
            *_e3(url, work, data),
            *_pooch(url, work, data),
            *_https(https_url, work, data, no_https),
        ]
    }
    return [by_name[name] for name in FETCH_NAMES]
