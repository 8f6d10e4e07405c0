"""A store of resources at HTTP(S) URLs, identified by their digest.

The e3-core driver of the same name, typed and hardened. A query names a URL
and the digest of the content found there::

    store = HTTPSimpleStore({}, cache)
    info = store.get_resource_metadata({"url": "https://host/x.tgz", "sha": sha1})
    path = store.download_resource(info, "/tmp/dest")

``sha`` is a SHA-1 exactly as in e3-core; ``sha256`` or ``sha512`` name the
stronger digests instead. Digests are accepted in any case and compared in
lower case. The uid of a resource is its digest, so a SHA-1 query caches
under the same uid as in e3-core.

A download streams once: the content is hashed as it arrives, written to a
temporary file in the destination directory and renamed into place only once
its digest matches. The file is named after the server's
``Content-Disposition`` (``filename*`` first) or the URL's last path segment,
each only if it reduces to a safe base name, and after the digest otherwise.

Mirrors: each base URL of the ``mirrors`` setting stands for the scheme,
user information, host and port of a resource URL, and its path is put before
the resource's path; the query string is kept, the fragment dropped. With
``mirrors=["https://m.example/cache"]``, ``http://origin:8080/a/b.tgz?v=1``
is fetched from ``https://m.example/cache/a/b.tgz?v=1`` first, then from the
next mirror, and last from the resource URL itself unless
``fallback_to_origin`` is false. A URL is tried (with its retries) once,
however many mirrors lead to it (a mirror given twice, the origin's own base
URL), and whatever it holds that is not sent (a fragment, an empty query).

Connections: a download leaves its connection to the server open for the
next download from it, in a pool of the calling thread (a thread never uses
another's connections). They last as long as the thread, or until
:func:`close_connections`; one the server closed meanwhile is not reused.

This module does not import ``requests``: a cache hit does not load the HTTP
stack.

.. versionadded:: 0.1
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TypedDict, TypeGuard, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from e3_typed_store._digest_info import DIGEST_KEYS as DIGEST_KEYS
from e3_typed_store._digest_info import DigestResourceInfo, query_digest
from e3_typed_store._hashing import Algorithm
from e3_typed_store._query import host_problem, required_str, split_url
from e3_typed_store._redact import hide_credentials, hide_url_credentials
from e3_typed_store._types import CachedResource, is_mapping, override
from e3_typed_store.backends.base import Store, StoreOptions
from e3_typed_store.cache.backends.base import CacheProtocol
from e3_typed_store.errors import InvalidConfigurationError, InvalidQueryError

if sys.version_info >= (3, 11):
    from typing import Required, Self
else:
    from typing_extensions import Required, Self

__all__ = [
    "DIGEST_KEYS",
    "HTTPSimpleQuery",
    "HTTPSimpleStore",
    "HTTPSimpleStoreConfiguration",
    "HTTPSimpleStoreResourceInfo",
    "HTTPSimpleStoreSettings",
    "close_connections",
    "logger",
    "mirror_url",
]

#: The logger of this driver; the same name as e3-core's
#: (``e3.store.httpsimplestore``), so logging configured for e3 applies.
logger = logging.getLogger("e3.store.httpsimplestore")

_SCHEMES = frozenset({"http", "https"})
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_MAX_RETRIES = 100
_MIN_CHUNK = 1 << 10
_MAX_CHUNK = 1 << 26


class HTTPSimpleQuery(TypedDict, total=False):
    """The query of :class:`HTTPSimpleStore`: a URL and exactly one digest.

    .. versionadded:: 0.1
    """

    #: The resource's http or https URL.
    url: Required[str]
    #: Its SHA-1, hex (e3-core's key).
    sha: str
    #: Its SHA-256, hex.
    sha256: str
    #: Its SHA-512, hex.
    sha512: str


class HTTPSimpleStoreConfiguration(TypedDict, total=False):
    """The configuration of :class:`HTTPSimpleStore`; every key is optional.

    The keys and their defaults are the fields of
    :class:`HTTPSimpleStoreSettings`, plus ``offline``,
    ``trust_unchanged_files``, ``lock_timeout`` and ``cache_timeout``, which
    set the store's :class:`~e3_typed_store.backends.base.StoreOptions` when
    no ``options`` are given.

    .. versionadded:: 0.1
    """

    connect_timeout: float
    read_timeout: float
    deadline: float
    retries: int
    backoff_base: float
    backoff_max: float
    mirrors: Sequence[str]
    fallback_to_origin: bool
    progress: bool
    chunk_size: int
    # Read into the store's StoreOptions unless options= is given.
    offline: bool
    trust_unchanged_files: bool
    lock_timeout: float
    cache_timeout: int | None


@dataclass(frozen=True)
class HTTPSimpleStoreSettings:
    """The validated settings of :class:`HTTPSimpleStore`.

    :param connect_timeout: seconds to wait for a connection
    :param read_timeout: seconds to wait for the next bytes from a server
    :param deadline: seconds a whole download may take, every attempt, retry
        wait and mirror included: the socket is shut at the deadline, or as
        soon as it is connected if a connection is still being opened then,
        and a host name not resolved by then ends the download (see
        docs/security.md for what the resolver can still hold)
    :param retries: attempts made on one URL after a transient failure
        (connection error, timeout, truncated body, HTTP 429 or 5xx), from 0 to
        100; a dropped transfer resumes with a ``Range`` request when the server
        allows it. Any other error status, a refused redirect, a digest
        mismatch or an answer that is not HTTP on a new connection moves on to
        the next URL at once
    :param backoff_base: seconds before the first retry, doubled for each next
        one, each wait drawn at random between half and all of it (so that
        clients that failed together do not retry together); a
        ``Retry-After`` (seconds or an HTTP date) replaces it, and a wait that
        would end past the deadline ends the attempts on that URL at once
    :param backoff_max: the longest backoff between two attempts
    :param mirrors: base URLs tried in order before the resource URL (see the
        module documentation for how a resource URL maps onto one)
    :param fallback_to_origin: try the resource URL itself after the mirrors
    :param progress: draw a progress bar on standard error when it is a
        terminal
    :param chunk_size: the most bytes read from the network at once, from 1 KiB
        to 64 MiB. Over TLS (16 KiB a record) a read fills a block of up to
        this size, as large as arrives in a fraction of a second: a connection
        lost in the middle of one may lose that block's bytes, which a resumed
        download asks for again
    :raises InvalidConfigurationError: a value is of the wrong type or out of
        range; the error names the key and the value

    .. versionadded:: 0.1
    """

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    deadline: float = 3600.0
    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    mirrors: tuple[str, ...] = field(default=())
    fallback_to_origin: bool = True
    progress: bool = True
    chunk_size: int = 1 << 20

    def __post_init__(self) -> None:
        # Also when built directly rather than from a configuration.
        for name in ("connect_timeout", "read_timeout", "deadline"):
            _seconds(name, getattr(self, name), allow_zero=False)
        for name in ("backoff_base", "backoff_max"):
            _seconds(name, getattr(self, name), allow_zero=True)
        _integer("retries", self.retries, 0, _MAX_RETRIES)
        _integer("chunk_size", self.chunk_size, _MIN_CHUNK, _MAX_CHUNK)
        _flag("fallback_to_origin", self.fallback_to_origin)
        _flag("progress", self.progress)
        _mirrors(self.mirrors)
        if not self.mirrors and not self.fallback_to_origin:
            raise InvalidConfigurationError(
                "fallback_to_origin", False, "no mirror is configured"
            )

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, object] | None) -> Self:
        """Validate a configuration mapping into settings.

        :param configuration: the store configuration; None or ``{}`` for the
            defaults
        :raises InvalidConfigurationError: a key is unknown, or its value is of
            the wrong type or out of range
        """
        default = _defaults(cls)
        if configuration is None:
            return default
        values = _configuration_values(configuration, _known_keys(cls))
        if not values.keys() - StoreOptions.KEYS:
            return default
        key = _made_key(cls, values)
        made = _MADE.get(key) if key is not None else None
        if isinstance(made, cls):
            return made
        # A given value is checked and converted (an int of seconds becomes a
        # float, a list of mirrors a tuple); a value not given is the
        # default's, checked once already. (Module functions, not closures:
        # with runtime checks on, every closure made is decorated anew.)
        v, d = values, default
        made = cls(
            connect_timeout=_given_seconds(v, "connect_timeout", d.connect_timeout),
            read_timeout=_given_seconds(v, "read_timeout", d.read_timeout),
            deadline=_given_seconds(v, "deadline", d.deadline),
            retries=_given_integer(v, "retries", d.retries, 0, _MAX_RETRIES),
            backoff_base=_given_seconds(v, "backoff_base", d.backoff_base, True),
            backoff_max=_given_seconds(v, "backoff_max", d.backoff_max, True),
            mirrors=_mirrors(v["mirrors"]) if "mirrors" in v else d.mirrors,
            fallback_to_origin=_given_flag(
                v, "fallback_to_origin", d.fallback_to_origin
            ),
            progress=_given_flag(v, "progress", d.progress),
            chunk_size=_given_integer(
                v, "chunk_size", d.chunk_size, _MIN_CHUNK, _MAX_CHUNK
            ),
        )
        if key is not None and len(_MADE) < _MAX_MADE:
            _MADE[key] = made
        return made


class HTTPSimpleStoreResourceInfo(DigestResourceInfo):
    """A resource at a URL, with the digest its content must have.

    Built by :meth:`HTTPSimpleStore.get_resource_metadata`, or directly with
    e3-core's positional arguments (``url, sha``) plus an algorithm.

    :param url: the resource's http or https URL
    :param sha: its hex digest, in any case
    :param algorithm: the algorithm of *sha*
    :raises InvalidQueryError: the URL or the digest is malformed

    .. versionadded:: 0.1
    """

    _logger = logger

    def __init__(self, url: str, sha: str, algorithm: Algorithm = "sha1") -> None:
        self._url = _check_url(url)
        super().__init__(sha, algorithm)

    @property
    def url(self) -> str:
        """The resource's URL."""
        return self._url

    @property
    def sha(self) -> str:
        """The expected digest, lower-case hex (e3-core's attribute name)."""
        return self._digest

    @override
    def _location_key(self) -> str:
        return self._url

    @override
    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={hide_credentials(self._url)!r}, "
            f"sha={self._digest!r}, "
            f"algorithm={self._algorithm!r})"
        )


class HTTPSimpleStore(
    Store[HTTPSimpleStoreResourceInfo, HTTPSimpleQuery, HTTPSimpleStoreConfiguration]
):
    """Download resources from HTTP(S) URLs, checked against their digest.

    ``HTTPSimpleStore({}, None)`` works as in e3-core, with the default
    settings.

    :param store_configuration: the settings, validated into :attr:`settings`;
        None for the defaults
    :param cache_backend: where downloaded resources are recorded; None to
        disable caching
    :param options: cache and network behaviour of the store base; when None,
        read from the configuration's ``offline``, ``trust_unchanged_files``,
        ``lock_timeout`` and ``cache_timeout`` keys
    :raises InvalidConfigurationError: a configuration key is unknown or its
        value is bad; the error names both

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store_configuration: HTTPSimpleStoreConfiguration | None,
        cache_backend: CacheProtocol[CachedResource] | None,
        *,
        options: StoreOptions | None = None,
    ) -> None:
        configuration: HTTPSimpleStoreConfiguration = (
            store_configuration if store_configuration is not None else {}
        )
        #: The validated settings.
        self.settings = HTTPSimpleStoreSettings.from_configuration(configuration)
        super().__init__(configuration, cache_backend, options=options)

    @override
    def get_resource_metadata(
        self, query: HTTPSimpleQuery
    ) -> HTTPSimpleStoreResourceInfo:
        """Check the query and return the resource's metadata; no network access.

        :param query: ``url`` and exactly one of ``sha`` (SHA-1, as in
            e3-core), ``sha256`` or ``sha512``
        :raises InvalidQueryError: a key is missing, unknown or duplicated, or a
            value is not a string, not an http(s) URL with a host, or not a hex
            digest of the right length; the error names the key and the value
        """
        return _parse_query(query)

    @override
    def download_resource_content(
        self, metadata: HTTPSimpleStoreResourceInfo, dest: str
    ) -> str:
        """Download the resource into *dest*, bypassing the cache.

        The content is hashed while it streams into a temporary file of
        *dest*, which is renamed into place only if the digest matches:
        nothing is left in *dest* on failure.

        :param metadata: the resource's metadata
        :param dest: the directory to download into (created if missing)
        :return: the path of the downloaded file, inside *dest*
        :raises IntegrityError: the content has another digest
        :raises HTTPStatusError: the server answered an error status
        :raises DeadlineExceededError: the download took longer than the
            deadline
        :raises DestinationError: *dest* cannot take the file (a full disk...)
        :raises DownloadError: the download failed otherwise
        """
        # Imported here: a cache hit never loads requests.
        from e3_typed_store import _http

        settings = self.settings
        urls = [mirror_url(base, metadata.url) for base in settings.mirrors]
        if settings.fallback_to_origin:
            urls.append(metadata.url)
        # Each request once, at its first place: a URL that failed fails again.
        first: dict[str, str] = {}
        for url in urls:
            first.setdefault(_as_requested(url), url)
        return _http.download(
            list(first.values()),
            dest,
            algorithm=metadata.algorithm,
            expected=metadata.digest,
            default_name=_http.resource_file_name(metadata.url, metadata.uid),
            policy=settings,
            progress=settings.progress,
            log=logger,
        )


def mirror_url(base: str, url: str) -> str:
    """Return where *url* lies on the mirror at *base*.

    The mirror's scheme, host and port replace the URL's (and its user
    information, which is not sent to a mirror); the mirror's path is put
    before the URL's path; the query is kept and the fragment dropped.

    :param base: the mirror's base URL, e.g. ``https://mirror.example/cache``
    :param url: the resource URL, e.g. ``http://origin/a/b.tgz``
    :return: e.g. ``https://mirror.example/cache/a/b.tgz``

    .. versionadded:: 0.1
    """
    mirror = urlsplit(base)
    resource = urlsplit(url)
    path = mirror.path.rstrip("/") + "/" + resource.path.lstrip("/")
    return urlunsplit((mirror.scheme, mirror.netloc, path, resource.query, ""))


def _as_requested(url: str) -> str:
    """*url* as a request asks for it: no fragment, no empty query mark."""
    return urlunsplit(urlsplit(url)._replace(fragment=""))


def close_connections() -> None:
    """Close the connections to servers that the calling thread keeps open.

    A download leaves its connection open, in a pool of the calling thread,
    for the next download from the same server. A long-running program done
    with its servers, or about to be idle a long time, closes them here; a
    later download opens a new connection. Other threads' connections stay
    theirs: each thread closes its own. Nothing is imported when no download
    was made in this process.

    .. versionadded:: 0.1
    """
    if "e3_typed_store._http" in sys.modules:  # else no download was made
        from e3_typed_store import _http

        _http.close_thread_connections()


def _parse_query(value: object) -> HTTPSimpleStoreResourceInfo:
    # ``object``: the checks hold whatever a caller without a type checker sends.
    if not is_mapping(value):
        raise InvalidQueryError("query", value, "expected a mapping")
    query = value
    for key, value in query.items():
        if key != "url" and key not in DIGEST_KEYS:
            raise InvalidQueryError(
                key if isinstance(key, str) else repr(key), value, "unknown key"
            )
    url = required_str(_string_keys(query), "url")
    algorithm, sha = query_digest(_string_keys(query))
    return HTTPSimpleStoreResourceInfo(url, sha, algorithm)


def _string_keys(query: Mapping[object, object]) -> dict[str, object]:
    return {key: value for key, value in query.items() if isinstance(key, str)}


_SettingsT = TypeVar("_SettingsT", bound=HTTPSimpleStoreSettings)
# Settings are frozen: the defaults of a class are built and checked once.
_DEFAULTS: dict[type[HTTPSimpleStoreSettings], HTTPSimpleStoreSettings] = {}
_KNOWN_KEYS: dict[type[HTTPSimpleStoreSettings], frozenset[str]] = {}


def _defaults(cls: type[_SettingsT]) -> _SettingsT:
    found = _DEFAULTS.get(cls)
    if isinstance(found, cls):
        return found
    made = _DEFAULTS[cls] = cls()
    return made


# Settings made from a configuration, for the equal configurations that follow
# (a store is often built per request): a few dozen kinds at most in a process.
_MADE: dict[object, HTTPSimpleStoreSettings] = {}
_MAX_MADE = 64


def _made_key(
    cls: type[HTTPSimpleStoreSettings], values: Mapping[str, object]
) -> object | None:
    """A key naming settings made from *values*, or None if it cannot be had.

    Each value's type is part of it: ``True == 1 == 1.0``, but a key accepts
    one of them at most (``retries`` takes 1, not True).
    """
    try:
        return cls, frozenset((k, type(v), v) for k, v in values.items())
    except TypeError:  # an unhashable value: a list of mirrors...
        return None


def _known_keys(cls: type[HTTPSimpleStoreSettings]) -> frozenset[str]:
    known = _KNOWN_KEYS.get(cls)
    if known is None:
        names = frozenset(f.name for f in fields(cls))
        known = _KNOWN_KEYS[cls] = names | StoreOptions.KEYS
    return known


def _given_seconds(
    values: Mapping[str, object], name: str, fallback: float, allow_zero: bool = False
) -> float:
    return _seconds(name, values[name], allow_zero) if name in values else fallback


def _given_integer(
    values: Mapping[str, object], name: str, fallback: int, low: int, high: int
) -> int:
    return _integer(name, values[name], low, high) if name in values else fallback


def _given_flag(values: Mapping[str, object], name: str, fallback: bool) -> bool:
    return _flag(name, values[name]) if name in values else fallback


# URLs found valid, for the queries that name them again (one per store built
# per request, often): checking one again is a pure function of the string.
_VALID_URLS: set[str] = set()
_MAX_VALID_URLS = 256


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise InvalidQueryError(
            "url", url, f"expected a string, got {type(url).__name__}"
        )
    exact = type(url) is str  # a subclass could compare equal to anything
    if exact and url in _VALID_URLS:
        return url
    # What an error shows of the URL: no credentials, even malformed ones.
    shown = hide_url_credentials(url)
    if _SPACE_OR_CONTROL.search(url) is not None:
        raise InvalidQueryError("url", shown, "white space or control character")
    parts = _split_or_why(url)
    if isinstance(parts, ValueError):
        # Raised out of the except block: the ValueError, which may quote a
        # password's first part as a port, is not its context.
        raise InvalidQueryError(
            "url", shown, _malformed(parts, url, shown)
        ) from _cause_unless_hidden(parts, url, shown)
    if parts.scheme.lower() not in _SCHEMES:
        raise InvalidQueryError("url", shown, "only http and https URLs are served")
    if not parts.hostname:
        raise InvalidQueryError("url", shown, "the URL has no host")
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise InvalidQueryError("url", shown, problem)
    if not _latin_1_credentials(parts):
        raise InvalidQueryError("url", shown, _NOT_LATIN_1)
    if exact and len(_VALID_URLS) < _MAX_VALID_URLS:
        _VALID_URLS.add(url)
    return url


def _split_or_why(url: str) -> SplitResult | ValueError:
    """*url* split, or why it cannot be."""
    try:
        return split_url(url)
    except ValueError as exc:
        return exc


def _malformed(exc: ValueError, url: str, shown: str) -> str:
    """Why *url* is malformed; what urlsplit said only if it cannot quote a
    secret (a port that is no number may be a password's first part)."""
    return f"malformed URL: {exc}" if shown == url else "malformed URL"


def _cause_unless_hidden(exc: ValueError, url: str, shown: str) -> ValueError | None:
    return exc if shown == url else None


_NOT_LATIN_1 = (
    "user name and password must be Latin-1 once percent-decoded"
    " (HTTP basic authentication sends them so)"
)


def _latin_1_credentials(parts: SplitResult) -> bool:
    for part in (parts.username, parts.password):
        if part is not None:
            try:
                unquote(part).encode("latin-1")
            except UnicodeEncodeError:
                return False
    return True


def _seconds(name: str, value: object, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidConfigurationError(name, value, "expected a number of seconds")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "positive or zero" if allow_zero else "positive"
        raise InvalidConfigurationError(name, value, f"must be finite and {bound}")
    return float(value)


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidConfigurationError(name, value, "expected an integer")
    if not low <= value <= high:
        raise InvalidConfigurationError(name, value, f"must be in [{low}, {high}]")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidConfigurationError(name, value, "expected true or false")
    return value


def _configuration_values(
    configuration: object, known: frozenset[str]
) -> dict[str, object]:
    if not is_mapping(configuration):
        raise InvalidConfigurationError(
            "store_configuration", configuration, "expected a mapping"
        )
    values: dict[str, object] = {}
    for key, value in configuration.items():
        if not isinstance(key, str) or key not in known:
            name = key if isinstance(key, str) else repr(key)
            raise InvalidConfigurationError(name, value, "unknown key")
        values[key] = value
    return values


def _is_list(value: object) -> TypeGuard[Sequence[object]]:
    # Any sequence the type allows (a deque, a UserList), but not a string,
    # which is a sequence of strings too: one URL given for a list of them.
    return isinstance(value, Sequence) and not isinstance(
        value, (str, bytes, bytearray)
    )


def _mirrors(value: object) -> tuple[str, ...]:
    if not _is_list(value):
        raise InvalidConfigurationError(
            "mirrors", value, "expected a list of base URLs"
        )
    return tuple(_mirror(mirror) for mirror in value)


def _mirror(mirror: object) -> str:
    if not isinstance(mirror, str):
        raise InvalidConfigurationError("mirrors", mirror, "expected a base URL string")
    shown = hide_url_credentials(mirror)
    if _SPACE_OR_CONTROL.search(mirror) is not None:
        raise InvalidConfigurationError(
            "mirrors", shown, "white space or control character"
        )
    parts = _split_or_why(mirror)
    if isinstance(parts, ValueError):  # see _check_url
        raise InvalidConfigurationError(
            "mirrors", shown, _malformed(parts, mirror, shown)
        ) from _cause_unless_hidden(parts, mirror, shown)
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise InvalidConfigurationError(
            "mirrors", shown, "expected an http or https URL with a host"
        )
    if parts.query or parts.fragment:
        raise InvalidConfigurationError(
            "mirrors", shown, "a mirror base URL has no query or fragment"
        )
    # What a resource URL is refused for at query time (see _check_url): else
    # the request for it would fail, and the next URL would not be tried.
    problem = host_problem(parts.hostname)
    if problem is not None:
        raise InvalidConfigurationError("mirrors", shown, problem)
    if not _latin_1_credentials(parts):
        raise InvalidConfigurationError("mirrors", shown, _NOT_LATIN_1)
    return mirror
