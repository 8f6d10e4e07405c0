"""The ``e3-typed-store`` command line (also ``python -m e3_typed_store``)."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import importlib
import io
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn, TextIO

from e3_typed_store._content import ContentStore
from e3_typed_store._locking import WAIT_LOGGER
from e3_typed_store._plugins import (
    CACHE_API,
    CACHE_NAMESPACE,
    STORE_API,
    STORE_NAMESPACE,
    check_driver,
    driver_names,
    load_driver_class,
)
from e3_typed_store._redact import one_line
from e3_typed_store._types import CachedResource, override
from e3_typed_store.errors import (
    DestinationError,
    DownloadError,
    IntegrityError,
    InvalidConfigurationError,
    InvalidQueryError,
    OfflineError,
    PluginError,
    StoreError,
)

__all__ = ["EXIT_CODES", "default_cache_dir", "main"]

PROG = "e3-typed-store"

#: The environment variable naming the default cache directory.
CACHE_DIR_VARIABLE = "E3_TYPED_STORE_CACHE_DIR"

EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own
EXIT_BAD_QUERY = 3
EXIT_INTEGRITY = 4
EXIT_NETWORK = 5
EXIT_OFFLINE = 6
EXIT_PLUGIN = 7
EXIT_CORRUPTED = 8
EXIT_DESTINATION = 9
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE's, as a shell reports a process it killed

#: Exit status per error kind, most specific first.
EXIT_CODES: tuple[tuple[type[StoreError], int], ...] = (
    (OfflineError, EXIT_OFFLINE),
    (IntegrityError, EXIT_INTEGRITY),
    (DestinationError, EXIT_DESTINATION),
    (DownloadError, EXIT_NETWORK),
    (InvalidQueryError, EXIT_BAD_QUERY),
    (InvalidConfigurationError, EXIT_BAD_QUERY),
    (PluginError, EXIT_PLUGIN),
)

# Namespaces the `drivers` command lists: ours, then e3-core's.
E3_STORE_NAMESPACE = "e3.store"
E3_CACHE_NAMESPACE = "e3.store.cache.backend"


def default_cache_dir() -> str:
    """Return the cache directory used when ``--cache-dir`` is not given.

    ``$E3_TYPED_STORE_CACHE_DIR`` if set and not blank (a leading ``~`` or
    ``~user`` expanded: a value quoted in a configuration file or a CI variable
    reaches us as written), else the user cache directory of the platform
    (``~/.cache/e3-typed-store`` on Linux). A value of white space only (a
    variable left blank in a CI configuration) is taken as not set, not as a
    directory named by it.
    """
    from_env = os.environ.get(CACHE_DIR_VARIABLE, "")
    if from_env.strip():
        return os.path.expanduser(from_env)
    import platformdirs

    return platformdirs.user_cache_dir("e3-typed-store")


def _exit_code(error: StoreError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EXIT_ERROR


def _fail(message: str, code: int) -> int:
    _note(f"{PROG}: error: {message}")
    return code


def _note(line: str) -> None:
    """Write *line* on standard error; nowhere when it is closed (``2>&-``:
    ``print`` would write it on standard output, among the results) or cannot
    be written (the terminal went away: EIO; a full disk)."""
    if sys.stderr is None:
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        _drop_output(sys.stderr)


class _OutputError(Exception):
    """Standard output cannot be written: its reader went away, a full disk."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"cannot write the output: {error}")
        self.error = error


# The first failure to write a result, but for a reader gone: the command
# does its work all the same, its output dropped, and says so at the end.
_LOST_OUTPUT: list[OSError] = []


def _out(line: str, *, end: str = "\n", flush: bool = False) -> None:
    """Write *line* on standard output, the command's results.

    Its reader gone (EPIPE), the command stops: an :class:`_OutputError`.
    Closed (``>&-``: print would drop the result without a word) or not
    writable otherwise (a full disk), the rest of the output is dropped, the
    command goes on, and :func:`main` reports the error, as a shell's
    ``echo`` does.
    """
    if _LOST_OUTPUT:
        return
    if sys.stdout is None:
        _LOST_OUTPUT.append(OSError(errno.EBADF, "standard output is closed"))
        return
    try:
        print(line, end=end, flush=flush)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise _OutputError(exc) from exc
        _LOST_OUTPUT.append(exc)
        _drop_output(sys.stdout)


def _flush_output() -> None:
    """Write out what standard output still buffers, as an :class:`_OutputError`
    if it cannot be (else the interpreter's exit would report it on its own)."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except OSError as exc:
        raise _OutputError(exc) from exc


# --- output -------------------------------------------------------------------

# The error handler of stdout and stderr. A surrogate of surrogateescape (a
# path of bytes that are no text in the locale's encoding) is written back as
# the byte it stands for; anything else the encoding cannot take (a lone
# surrogate of another range, a non-ASCII character on an ASCII terminal) as a
# backslash escape: an odd character costs its look, never the command.
_OUTPUT_ERRORS = "e3_typed_store.cli-output"


def _bytes_or_backslash(error: UnicodeError) -> tuple[str | bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    char = error.object[error.start]
    if "\udc80" <= char <= "\udcff":
        return bytes([ord(char) - 0xDC00]), error.start + 1
    return char.encode("ascii", "backslashreplace").decode("ascii"), error.start + 1


def _is_byte_surrogate(char: str, path: bool) -> bool:
    return path and "\udc80" <= char <= "\udcff"


def _field(text: str, *, path: bool = False) -> str:
    """Return *text* as one field of a tab-separated line.

    As it is when every character is printable (spaces and non-ASCII letters
    included); else, or when it starts with a quote, as a Python string
    literal (``repr``): a tab, a newline, a terminal escape sequence or a
    bidirectional override cannot break the line or reach the terminal, and a
    field that starts with a quote is always such a literal. In a *path*, the
    surrogates of bytes that are no text (surrogateescape) count as printable:
    they are written back as those bytes. A field that the output's encoding
    cannot take (a non-ASCII letter on an ASCII terminal) is such a literal
    too, its odd characters escaped by the output's error handler.
    """
    if not text.startswith(("'", '"')) and all(
        char.isprintable() or _is_byte_surrogate(char, path) for char in text
    ):
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
        try:
            text.encode(encoding, "surrogateescape" if path else "strict")
        except (UnicodeError, LookupError):
            return repr(text)
        return text
    return repr(text)


# --- fetch --------------------------------------------------------------------


def _fetch(args: argparse.Namespace) -> int:
    from e3_typed_store.backends.base import StoreOptions
    from e3_typed_store.backends.http_simple_store import (
        HTTPSimpleQuery,
        HTTPSimpleStore,
        HTTPSimpleStoreConfiguration,
    )
    from e3_typed_store.cache.backends.filecache import FileCache

    algorithm: str
    digest: str
    algorithm, digest = args.digest
    query: HTTPSimpleQuery = {"url": args.url}
    if algorithm == "sha1":
        query["sha"] = digest
    elif algorithm == "sha256":
        query["sha256"] = digest
    else:
        query["sha512"] = digest
    lock_timeout: float | None = args.lock_timeout
    configuration: HTTPSimpleStoreConfiguration = {"progress": not args.no_progress}
    if args.deadline is not None:
        configuration["deadline"] = args.deadline
    if args.retries is not None:
        configuration["retries"] = args.retries
    if args.mirror:
        configuration["mirrors"] = list(args.mirror)
    cache = FileCache({"cache_dir": args.cache_dir})
    try:
        store = HTTPSimpleStore(
            configuration,
            cache,
            options=StoreOptions(
                offline=True if args.offline else None,
                trust_unchanged_files=args.trust_unchanged,
                lock_timeout=StoreOptions.lock_timeout
                if lock_timeout is None
                else lock_timeout,
            ),
        )
    except InvalidConfigurationError as exc:
        # The store's own bounds (retries up to 100, a finite deadline, a
        # mirror that is an http(s) base URL), said of the option.
        fetch_parser: argparse.ArgumentParser = args.command_parser  # its usage
        option = _FETCH_OPTIONS.get(exc.key, exc.key)
        fetch_parser.error(f"argument {option}: {exc.value!r}: {exc.reason}")
    dest: str = args.dest
    created: list[str] = []
    try:
        _make_directories(dest, created)
        with _using_directory(dest, created):
            metadata = store.get_resource_metadata(query)
            path = store.fetch_resource(metadata, dest)
    except BaseException:
        _remove_empty(created)
        raise
    # As it is, for a script to read back; only a character the output's
    # encoding cannot take is escaped (by its error handler, see main()).
    _out(path)
    if not _kept(cache.get(metadata.uid), ContentStore(cache.cache_dir), path):
        # The store goes on without a cache it cannot write (a cache directory
        # that is a dangling link or a file, a full disk), and says why only
        # under -v: the fetch succeeded, but a later one may download again.
        _note(
            f"{PROG}: warning: {one_line(args.cache_dir)}: the cache could not keep"
            f" a copy of it ({PROG} -v says why, run when it cannot); a later fetch"
            " may download it again"
        )
    return 0


def _kept(entry: CachedResource | None, content: ContentStore, path: str) -> bool:
    """Whether *entry*, what the cache records of the file fetched at *path*,
    names a copy of the cache's own, among the copies of *content*: not the
    file in dest itself (no room for a copy), nor a copy left from before that
    the store could not replace (a read-only cache whose copy went)."""
    if entry is None or not content.holds(entry.local_path):
        return False
    try:
        return os.stat(entry.local_path).st_size == os.stat(path).st_size
    except OSError:  # gone
        return False


# The store's configuration keys that fetch's options set.
_FETCH_OPTIONS = {
    "deadline": "--deadline",
    "retries": "--retries",
    "mirrors": "--mirror",
}


def _make_directories(path: str, made: list[str]) -> None:
    """Make *path* and its missing ancestors, as ``os.makedirs`` does, and add
    those made to *made*, deepest first.

    The directories are those of the path as written: ``a/../b`` makes ``a``
    and ``b``. One that cannot be made is left to the store, whose error says
    why; one made meanwhile by another process is not counted.
    """
    head, tail = os.path.split(path)
    if not tail:
        head, tail = os.path.split(head)
    if head and tail and not os.path.exists(head):
        _make_directories(head, made)
    if tail in ("", os.curdir, os.pardir):
        return
    try:
        os.mkdir(path)
    except OSError:
        return
    made.insert(0, path)


# How many times a fetch makes its --dest again, when another fetch that
# had made it removes it at once (a failure), before going on without its lock.
_DEST_ATTEMPTS = 10


@contextmanager
def _using_directory(path: str, made: list[str]) -> Generator[None]:
    """Hold a shared lock on the directory *path* for the block (POSIX).

    Another fetch that made *path* and fails leaves it in place meanwhile
    (see :func:`_remove_empty`): it looks empty while a download runs, since
    the download's file has no name until it is whole. If such a fetch
    removed it before the lock was taken, it is made again (added to *made*).
    Where there is no such lock (Windows, a filesystem without ``flock``),
    the block runs all the same.
    """
    if sys.platform == "win32":
        yield
        return
    import fcntl

    fd: int | None = None
    try:  # the descriptor is closed whatever stops this (Ctrl-C in flock too)
        for _ in range(_DEST_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                _make_directories(path, made)
                continue
            except OSError:
                break  # no directory to lock: the store says why
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if os.fstat(fd).st_nlink > 0:
                    break  # not removed before the lock was had
            except OSError:
                break  # no flock here
            os.close(fd)
            fd = None
            _make_directories(path, made)
        yield
    finally:
        if fd is not None:
            os.close(fd)


# The errors of a filesystem without flock: a directory there is removed if
# empty, as where nothing can be locked.
_NO_FLOCK = frozenset(
    {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}
)


def _remove_empty(directories: list[str]) -> None:
    """Remove *directories*, deepest first, as long as each is empty and no
    other fetch uses it (see :func:`_using_directory`).

    They are those a failed fetch found missing: the ones it made (and
    nothing was left in) go again; one that holds anything, that another
    fetch is downloading into, or that the fetch never made, stays.
    """
    for directory in directories:
        if not _removed_if_unused(directory):
            return


def _removed_if_unused(directory: str) -> bool:
    """Remove the empty *directory* unless another fetch holds its lock;
    whether it is gone now."""
    if sys.platform == "win32":
        return _rmdir(directory)
    import fcntl

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return not os.path.lexists(directory)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                # Held by another fetch, or a lock that cannot be told (NFS
                # refuses an exclusive one on a read-only descriptor): kept.
                return False
        return _rmdir(directory)
    finally:
        os.close(fd)


def _rmdir(directory: str) -> bool:
    """Remove the empty *directory*; whether it is gone now."""
    try:
        os.rmdir(directory)
    except OSError:
        return not os.path.lexists(directory)
    return True


class _DigestAction(argparse.Action):
    """Store ``(algorithm, hex)`` for --sha1/--sha256/--sha512."""

    @override
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error("give exactly one of --sha1, --sha256, --sha512")
        algorithm = self.option_strings[0].lstrip("-")
        setattr(namespace, self.dest, (algorithm, values))


# --- cache --------------------------------------------------------------------


def _format_size(size: int | None) -> str:
    if size is None:
        return "missing"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        shown = f"{value:.0f}" if unit == "B" else f"{value:.1f}"
        # Rounded up to 1024.0, it is one of the next unit.
        if float(shown) < 1024 or unit == "GiB":
            return f"{shown} {unit}"
        value /= 1024
    return f"{size} B"


def _format_age(mtime: float | None, now: float) -> str:
    if mtime is None:
        return "-"
    seconds = max(0.0, now - mtime)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f}{unit}"
    return f"{seconds:.0f}s"


def _cache(args: argparse.Namespace) -> int:
    from e3_typed_store._cache_admin import (
        clear_cache,
        identity_of,
        list_items,
        prune,
        remove_item_if_unchanged,
        verify_item,
    )
    from e3_typed_store.cache.backends.filecache import FileCache

    cache = FileCache({"cache_dir": args.cache_dir})
    now = time.time()
    if args.cache_command == "list":
        items = list_items(cache)
        for item in items:
            _out(
                f"{_field(item.uid)}\t{_format_size(item.size)}\t"
                f"{_format_age(item.mtime, now)}\t{_field(item.path, path=True)}"
            )
        total = sum(item.size or 0 for item in items)
        _flush_output()  # a reader that went away: nothing more is said
        _note(f"{len(items)} entries, {_format_size(total)}")
        return 0
    if args.cache_command == "verify":
        bad = kept = 0
        for item in list_items(cache):
            seen = identity_of(item.path)  # before the check, which takes time
            status = verify_item(cache, item)
            if status in ("corrupted", "missing"):
                bad += 1
                if args.remove:
                    try:
                        removed = remove_item_if_unchanged(cache, item, seen)
                    except OSError as exc:
                        kept += 1
                        status += f", not removed: {exc}"
                    else:
                        status += (
                            ", removed"
                            if removed
                            else ", not removed: a fetch kept a new copy meanwhile"
                        )
            # The status holds an error's text, and its paths: a field too.
            _out(
                f"{_field(item.uid)}\t{_field(status, path=True)}\t"
                f"{_field(item.path, path=True)}"
            )
        if kept:
            return _fail(f"{kept} bad entries could not be removed", 1)
        return EXIT_CORRUPTED if bad and not args.remove else 0
    if args.cache_command == "clear":
        _note(f"removed {clear_cache(cache)} entries")
        return 0
    # prune
    if args.max_size is None and args.older_than is None:
        return _fail("prune needs --max-size and/or --older-than", EXIT_USAGE)
    evicted = prune(cache, args.max_size, args.older_than, now)
    for item in evicted:
        _out(
            f"evicted\t{_field(item.uid)}\t{_format_size(item.size)}\t"
            f"{_field(item.path, path=True)}"
        )
    return 0


def _size(text: str) -> int:
    from e3_typed_store._cache_admin import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _age(text: str) -> float:
    from e3_typed_store._cache_admin import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# --- drivers ------------------------------------------------------------------


def _driver_status(namespace: str, name: str, api: dict[str, tuple[str, ...]]) -> str:
    try:
        # What the plugin prints while it is imported is no line of the listing.
        with contextlib.redirect_stdout(sys.stderr):
            driver = load_driver_class(namespace, name)
    except PluginError as exc:
        return f"cannot load: {exc.reason}"
    problems = check_driver(driver, api)
    target = f"{driver.__module__}:{driver.__qualname__}"
    if problems:
        return f"{target}\tdoes not conform: {'; '.join(problems)}"
    return f"{target}\tok"


def _drivers(_args: argparse.Namespace) -> int:
    for namespace, api in (
        (STORE_NAMESPACE, STORE_API),
        (E3_STORE_NAMESPACE, STORE_API),
        (CACHE_NAMESPACE, CACHE_API),
        (E3_CACHE_NAMESPACE, CACHE_API),
    ):
        for name in driver_names(namespace):
            # The line's start goes out before the driver is imported: if an
            # import never ends, the unfinished last line names the culprit.
            # A tab or a line break in a name is escaped: one line per
            # driver, three fields.
            _out(f"{namespace}\t{one_line(name)}\t", end="", flush=True)
            _out(_driver_status(namespace, name, api), flush=True)
    return 0


# Where `check-driver NAME` looks for NAME, and the API a driver there has.
_KINDS = (
    (STORE_NAMESPACE, "store"),
    (E3_STORE_NAMESPACE, "store"),
    (CACHE_NAMESPACE, "cache"),
    (E3_CACHE_NAMESPACE, "cache"),
)
_APIS = {"store": STORE_API, "cache": CACHE_API}


def _load_target(target: str) -> tuple[type, str | None]:
    """Resolve a registered name, else ``module:Class``, to a class and its kind.

    The kind is None for a class named by ``module:Class``: no namespace says.
    """
    # A registered name first: a name may hold a colon.
    for namespace, kind in _KINDS:
        if target in driver_names(namespace):
            with contextlib.redirect_stdout(sys.stderr):
                return load_driver_class(namespace, target), kind
    if ":" not in target:
        raise PluginError(
            ", ".join(namespace for namespace, _ in _KINDS), target, "no such driver"
        )
    module_name, _, path = target.partition(":")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            found: object = importlib.import_module(module_name)
            for attribute in path.split("."):  # Outer.Inner, as an entry point
                found = getattr(found, attribute)
    except KeyboardInterrupt:
        raise  # the user's Ctrl-C, as far as anyone can tell
    except BaseException as exc:  # a plugin's failure, reported (re-raised)
        # Whatever the module's import raises but a KeyboardInterrupt.
        # ValueError: an empty module name; TypeError: a relative one.
        raise PluginError("<import>", target, f"cannot be imported: {exc!r}") from exc
    if not isinstance(found, type):
        raise PluginError("<import>", target, f"{found!r} is not a class")
    return found, None


def _closest_kinds(driver: type) -> list[str]:
    # The API of which the class has more methods; both when it has as many
    # of either (none, say).
    present = {
        kind: sum(_has_method(driver, method) for method in api if method != "__init__")
        for kind, api in _APIS.items()
    }
    best = max(present.values())
    return [kind for kind, count in present.items() if count == best]


def _has_method(driver: type, method: str) -> bool:
    """Whether *driver* has a callable *method*; one whose lookup raises (a
    metaclass's ``__getattr__``) counts as absent."""
    try:
        return callable(getattr(driver, method, None))
    except Exception:  # noqa: BLE001 - the class's own code
        return False


def _check_driver(args: argparse.Namespace) -> int:
    driver, kind = _load_target(args.target)
    if args.kind is not None:
        kind = args.kind
    kinds = [kind] if kind is not None else _closest_kinds(driver)
    problems = {checked: check_driver(driver, _APIS[checked]) for checked in kinds}
    name = f"{driver.__module__}:{driver.__qualname__}"
    for checked in kinds:
        if not problems[checked]:
            _out(f"{name}: conforms to the {checked} API")
            return 0
    if len(kinds) > 1:
        _out(f"{name}: as close to either API: checked against both")
        for checked in kinds:
            for problem in problems[checked]:
                _out(f"{name}: {checked} API: {problem}")
        return EXIT_PLUGIN
    (checked,) = kinds
    for problem in problems[checked]:
        _out(f"{name}: {problem}")
    if kind is None:
        other = "cache" if checked == "store" else "store"
        _out(
            f"{name}: checked against the {checked} API, which it is closer to"
            f" (--kind {other} checks the {other} API)"
        )
    return EXIT_PLUGIN


# --- demo ---------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from e3_typed_store._demo import run_demo

    return run_demo(processes=args.processes, out=_out)


# --- parser -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is written on stderr only:
    argparse writes its usage on stdout when stderr is closed (``2>&-``),
    where ``path=$(...)`` would read it. Its subcommands' parsers are of this
    class too."""

    @override
    def error(self, message: str) -> NoReturn:
        if sys.stderr is not None:
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the command line."""
    parser = _Parser(
        prog=PROG,
        description="Fetch resources by digest into a verified local cache.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what the store does: retries, discarded cache entries, ...",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cache_dir_help = (
        f"the cache directory (default: ${CACHE_DIR_VARIABLE}, else the user cache"
        " directory)"
    )

    fetch = commands.add_parser(
        "fetch",
        help="download a resource, or serve it from the cache",
        description="Print the path of the resource inside DEST.",
    )
    fetch.add_argument("url", metavar="URL", help="http or https URL of the resource")
    for algorithm in ("sha1", "sha256", "sha512"):
        fetch.add_argument(
            f"--{algorithm}",
            dest="digest",
            metavar="HEX",
            action=_DigestAction,
            help=f"the expected {algorithm} of the resource",
        )
    fetch.add_argument(
        "--dest",
        type=_directory,
        default=".",
        metavar="DIR",
        help="directory to place the resource in (default: .)",
    )
    fetch.add_argument(
        "--cache-dir", type=_directory, default=None, metavar="DIR", help=cache_dir_help
    )
    fetch.add_argument(
        "--offline",
        action="store_true",
        help="serve from the cache only; never use the network",
    )
    fetch.add_argument(
        "--no-progress", action="store_true", help="do not show a progress bar"
    )
    fetch.add_argument(
        "--trust-unchanged",
        action="store_true",
        help="serve a hit without re-hashing when its file is unchanged since verified",
    )
    fetch.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="how long to wait for another process downloading the same resource"
        " (default: 3600; inf: as long as it takes)",
    )
    fetch.add_argument(
        "--deadline",
        type=_finite_seconds,
        default=None,
        metavar="SECONDS",
        help="the most a whole download may take, retries and mirrors included"
        " (default: 3600)",
    )
    fetch.add_argument(
        "--retries",
        type=_count,
        default=None,
        metavar="N",
        help="attempts after a transient failure, per URL (0 to 100, default: 3)",
    )
    fetch.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help="a base URL to try before URL, in the order given (repeatable)",
    )
    fetch.set_defaults(handler=_fetch, command_parser=fetch)

    cache = commands.add_parser("cache", help="inspect and maintain the cache")
    cache.add_argument(
        "--cache-dir", type=_directory, default=None, metavar="DIR", help=cache_dir_help
    )
    cache_commands = cache.add_subparsers(
        dest="cache_command", required=True, metavar="ACTION"
    )
    cache_commands.add_parser(
        "list", help="list entries with their size and the age of their last use"
    )
    verify = cache_commands.add_parser(
        "verify", help="re-hash every entry and report bad ones"
    )
    verify.add_argument(
        "--remove", action="store_true", help="remove corrupted or missing entries"
    )
    cache_commands.add_parser(
        "clear", help="remove every entry, kept copy and idle lock file"
    )
    prune = cache_commands.add_parser(
        "prune",
        help="evict entries, least recently used first, down to the bounds given",
    )
    prune.add_argument(
        "--max-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="keep at most SIZE bytes of payloads (500M, 2G, ...)",
    )
    prune.add_argument(
        "--older-than",
        type=_age,
        default=None,
        metavar="AGE",
        help="evict entries not used for longer than AGE (30d, 12h, ...)",
    )
    # Also after the action (`cache list --cache-dir DIR`), as fetch takes it;
    # not given there, the one before it, or the default, stands.
    for action in cache_commands.choices.values():
        action.add_argument(
            "--cache-dir",
            type=_directory,
            default=argparse.SUPPRESS,
            metavar="DIR",
            help=cache_dir_help,
        )
    cache.set_defaults(handler=_cache)

    drivers = commands.add_parser(
        "drivers", help="list installed stores and caches and whether each conforms"
    )
    drivers.set_defaults(handler=_drivers)

    check = commands.add_parser(
        "check-driver", help="check one driver against the store or cache API"
    )
    check.add_argument("target", metavar="NAME|module:Class")
    check.add_argument(
        "--kind", choices=("store", "cache"), default=None, help="the API to check"
    )
    check.set_defaults(handler=_check_driver)

    demo = commands.add_parser(
        "demo", help="an offline end-to-end run against a built-in loopback server"
    )
    demo.add_argument(
        "--processes",
        type=_demo_processes,
        default=4,
        metavar="N",
        help="processes fetching at once (1 to 64, default: 4)",
    )
    demo.set_defaults(handler=_demo)
    return parser


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(_plain_number(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _count(text: str) -> int:
    return _whole_number(text, 0)


def _demo_processes(text: str) -> int:
    from e3_typed_store._demo import MAX_PROCESSES

    value = _positive_int(text)
    if value > MAX_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_PROCESSES}, not {value}"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(_plain_number(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text!r}")
    return value


def _finite_seconds(text: str) -> float:
    # Said of the value as typed: "infinity" would be named "inf" by the
    # store's own bound.
    value = _seconds(text)
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be finite, not {text!r}")
    return value


def _plain_number(text: str) -> str:
    """*text*, if it is a number as written in a shell script: ASCII, with no
    ``_`` between digits (which Python's ``int`` and ``float`` take, as they
    take fullwidth and Arabic-Indic digits).

    :raises ValueError: it is not
    """
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return text


def _directory(text: str) -> str:
    # An empty path is no directory (not "here": --dest defaults to that).
    # A leading ~ the shell left alone (--dest=~/x, a quoted "~/x") is the
    # home directory, as it is to the shell; ./~ names a directory called ~.
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return os.path.expanduser(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    :param argv: the arguments, without the program name (default: sys.argv)
    :return: the exit status
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "cache_dir", "unset") is None:
        args.cache_dir = default_cache_dir()
    if args.command == "fetch" and args.digest is None:
        fetch_parser: argparse.ArgumentParser = args.command_parser  # its usage
        fetch_parser.error("fetch needs one of --sha1, --sha256, --sha512")
    # Quiet by default, so that a failure is one line on stderr (the error
    # itself: not also the CRITICAL line e3-core's checks log on a digest
    # mismatch); -v shows the store's warnings (retries, discarded cache
    # entries) and what it does.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL + 1,
        format=f"{PROG}: %(levelname)s: %(message)s",
        handlers=[_AboveTheBar(sys.stderr)],
    )
    # Except a long wait for another process's download: without a word, the
    # command would seem to hang.
    WAIT_LOGGER.setLevel(logging.WARNING)
    # And an E3_TYPED_STORE_OFFLINE that says neither on nor off: the fetch
    # goes to the network, which the user may have meant to avoid.
    logging.getLogger("e3.store.offline").setLevel(logging.WARNING)
    # A path that is not valid in the locale's encoding (bytes decoded with
    # surrogateescape) is written back as the bytes it came from, and any other
    # character the output cannot encode as a backslash escape: never a
    # UnicodeEncodeError after the work is done.
    codecs.register_error(_OUTPUT_ERRORS, _bytes_or_backslash)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=_OUTPUT_ERRORS)
    _LOST_OUTPUT.clear()
    try:
        with _terminated_as_interrupted():
            code: int = args.handler(args)
            _flush_output()
            if _LOST_OUTPUT:
                raise _OutputError(_LOST_OUTPUT[0])
    except _OutputError as exc:
        _drop_output(sys.stdout)
        if exc.error.errno == errno.EPIPE:
            # The reader went away (`| head`): the rest of the output is not
            # wanted, and a shell says nothing either.
            return EXIT_BROKEN_PIPE
        return _fail(one_line(str(exc)), EXIT_ERROR)
    except _Terminated as ended:  # before KeyboardInterrupt: a subclass
        _settle_output()
        if ended.signum == _SIGHUP:
            return _fail("hung up", 128 + ended.signum)
        return _fail("terminated", 128 + ended.signum)
    except KeyboardInterrupt:
        _settle_output()
        return _fail("interrupted", 130)
    except StoreError as exc:
        _settle_output()
        return _fail(one_line(str(exc)), _exit_code(exc))
    except OSError as exc:
        _settle_output()
        return _fail(one_line(str(exc)), EXIT_ERROR)
    return code


class _AboveTheBar(logging.StreamHandler[TextIO]):
    """Log lines on standard error, each on a line of its own while a
    download's progress bar is drawn there: the bar is cleared for the line and
    drawn again below it, where it would otherwise be followed by the line."""

    @override
    def format(self, record: logging.LogRecord) -> str:
        # As an error line is: a path's or a server's control characters
        # reach no terminal, and a record is one line.
        return one_line(super().format(record))

    @override
    def emit(self, record: logging.LogRecord) -> None:
        # tqdm is imported by a download that may draw a bar; a cache hit
        # never loads it, and does not here.
        if "tqdm" not in sys.modules:
            super().emit(record)
            return
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.stream):
            super().emit(record)


def _drop_output(stream: TextIO | None) -> None:
    """Point *stream*'s descriptor at the null device: what it buffers is
    dropped, and the interpreter's last flush has nothing to fail on."""
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)


def _settle_output() -> None:
    """Write out what stdout buffers, before a failure is reported; drop it
    if it cannot be (a command ended by a signal while its reader was gone)."""
    try:
        _flush_output()
    except _OutputError:
        _drop_output(sys.stdout)


class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: raised where the command is, so that it
    cleans up as it does for Ctrl-C (a download's temporary file, the
    directories it made). A KeyboardInterrupt, so that what lets the user's
    Ctrl-C through (a driver's import, a store's cleanup) lets it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


# SIGHUP: the terminal went away. Not on Windows.
_SIGHUP: int | None = getattr(signal, "SIGHUP", None)


@contextmanager
def _terminated_as_interrupted() -> Generator[None]:
    """Turn SIGTERM (what ``timeout``, ``kill``, a CI cancelling a job send)
    and SIGHUP (a closed terminal) into :class:`_Terminated` for the block, in
    the main thread only (the only one that may set a handler). A SIGHUP that
    was ignored (``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handled = [signal.SIGTERM]
    if _SIGHUP is not None and signal.getsignal(_SIGHUP) is not signal.SIG_IGN:
        handled.append(signal.Signals(_SIGHUP))
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
