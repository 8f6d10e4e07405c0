"""The errors raised by e3-typed-store.

Every error of the library derives from :class:`StoreError`, itself an
:class:`e3.error.E3Error`, so code written against ``e3.store`` keeps catching
what it caught before. A leaf also derives from the builtin it refines where
that helps callers::

    e3.error.E3Error
    └── StoreError
        ├── InvalidQueryError            (also ValueError)     key, value
        ├── InvalidConfigurationError    (also ValueError)     key, value
        ├── IntegrityError                                     url, expected, actual
        ├── DownloadError                                      url
        │   ├── HTTPStatusError                                url, status
        │   ├── DeadlineExceededError    (also TimeoutError)   url, deadline
        │   └── DestinationError                               url, dest
        ├── OfflineError                                       uid, reason
        ├── PluginError                  (also LookupError)    namespace, name
        └── CacheError                                         uid

Messages carry the offending values. Each error keeps them as attributes so that
callers can act on them without parsing the message.

.. versionadded:: 0.1
"""

from __future__ import annotations

import sys

from e3.error import E3Error

from e3_typed_store._redact import hide_credentials, hide_url_credentials
from e3_typed_store._types import override

if sys.version_info >= (3, 11):
    from typing import Self
else:
    from typing_extensions import Self

__all__ = [
    "CacheError",
    "DeadlineExceededError",
    "DestinationError",
    "DownloadError",
    "HTTPStatusError",
    "IntegrityError",
    "InvalidConfigurationError",
    "InvalidQueryError",
    "OfflineError",
    "PluginError",
    "StoreError",
]


class StoreError(E3Error):
    """Root of every error raised by a store, a cache or the plugin loader.

    Built as e3-core's ``StoreError`` is, so that a driver ported from
    ``e3.store`` raises it unchanged.

    :param message: what went wrong, with the values involved; or several
        messages, the last one shown (as :class:`e3.error.E3Error` keeps them)
    :param origin: what raised it (a function, class or module name), shown
        before the message

    .. versionadded:: 0.1
    """

    def __init__(self, message: str | list[str], origin: str | None = None) -> None:
        super().__init__(message, origin)
        # What __init__ was given, so that the error pickles (multiprocessing).
        self._reduce_args: tuple[object, ...] = (message, origin)

    @override
    def __reduce__(self) -> tuple[type[Self], tuple[object, ...]]:
        return (type(self), self._reduce_args)


def _without_credentials(value: object) -> object:
    """*value*, as a bad query or configuration value is kept: a string with
    the credentials of the URL it may be hidden (strictly: it may be a
    malformed URL), and anything else whose ``repr`` holds an ``@`` (a list of
    URLs, bytes) as that ``repr``, hidden so."""
    if isinstance(value, str):
        return hide_url_credentials(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    shown = repr(value)
    return hide_url_credentials(shown) if "@" in shown else value


class InvalidQueryError(StoreError, ValueError):
    """A query handed to ``get_resource_metadata`` is malformed.

    :param key: the offending key of the query
    :param value: the value found under it (``None`` when the key is missing)
    :param reason: what is wrong with it

    .. versionadded:: 0.1
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        value = _without_credentials(value)
        self.key = key
        self.value = value
        self.reason = reason
        message = f"invalid query: {key!r}={value!r}: {reason}"
        super().__init__(hide_credentials(message))
        self._reduce_args = (key, value, reason)

    @staticmethod
    def missing(key: str) -> InvalidQueryError:
        """Build the error for a required key that is absent.

        :param key: the missing key
        """
        return InvalidQueryError(key, None, "required key is missing")


class InvalidConfigurationError(StoreError, ValueError):
    """A store or cache configuration is malformed.

    :param key: the offending configuration key
    :param value: the value found under it
    :param reason: what is wrong with it

    .. versionadded:: 0.1
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        value = _without_credentials(value)
        self.key = key
        self.value = value
        self.reason = reason
        message = f"invalid configuration: {key!r}={value!r}: {reason}"
        super().__init__(hide_credentials(message))
        self._reduce_args = (key, value, reason)


class IntegrityError(StoreError):
    """Downloaded content does not match the expected digest.

    The URL's credentials are hidden (``user:***@host``) in the message and in
    ``url``.

    :param url: where the content came from
    :param expected: the digest the query asked for
    :param actual: the digest of what was received

    .. versionadded:: 0.1
    """

    def __init__(self, url: str, expected: str, actual: str) -> None:
        url = hide_credentials(url)
        self.url = url
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"integrity check failed for {url}: expecting {expected} got {actual}"
        )
        self._reduce_args = (url, expected, actual)


class DownloadError(StoreError):
    """A resource could not be downloaded.

    The URL's credentials are hidden (``user:***@host``) in the message and in
    ``url``, and in the URLs quoted by the reason.

    :param url: the resource's location
    :param reason: why the download failed

    .. versionadded:: 0.1
    """

    def __init__(self, url: str, reason: str) -> None:
        url = hide_credentials(url)
        reason = hide_credentials(reason)
        self.url = url
        self.reason = reason
        super().__init__(f"cannot download {url}: {reason}")
        self._reduce_args = (url, reason)


class HTTPStatusError(DownloadError):
    """A server answered with an error status.

    :param url: the requested URL
    :param status: the HTTP status code received

    .. versionadded:: 0.1
    """

    def __init__(self, url: str, status: int) -> None:
        url = hide_credentials(url)
        self.status = status
        super().__init__(url, f"HTTP status {status}")
        self._reduce_args = (url, status)


class DeadlineExceededError(DownloadError, TimeoutError):
    """A download did not complete within its total deadline.

    :param url: the requested URL
    :param deadline: the deadline, in seconds

    .. versionadded:: 0.1
    """

    def __init__(self, url: str, deadline: float) -> None:
        url = hide_credentials(url)
        self.deadline = deadline
        super().__init__(url, f"not complete within the {deadline:g} s deadline")
        self._reduce_args = (url, deadline)


class DestinationError(DownloadError):
    """The destination cannot take a download: it cannot be created, written
    or renamed into (a full disk, a directory in the way of the file).

    Nothing is wrong with the resource or the network: another URL or a
    retry would fail the same way.

    :param url: the resource's location
    :param dest: the directory the download was going into
    :param reason: what failed, with what the system said

    .. versionadded:: 0.1
    """

    def __init__(self, url: str, dest: str, reason: str) -> None:
        url = hide_credentials(url)
        self.dest = dest
        super().__init__(url, reason)
        self._reduce_args = (url, dest, reason)


class OfflineError(StoreError):
    """A resource is not in the cache and the network may not be used.

    :param uid: the uid of the missing resource
    :param reason: why it cannot be had, when it is not missing from the
        cache (its cached copy cannot be checked now, say)

    .. versionadded:: 0.1
    """

    def __init__(self, uid: str, reason: str | None = None) -> None:
        self.uid = uid
        self.reason = reason
        why = f": {reason}" if reason is not None else " is not in the cache"
        super().__init__(f"offline mode: {uid}{why}")
        self._reduce_args = (uid, reason)


class PluginError(StoreError, LookupError):
    """A store or cache plugin cannot be loaded or does not conform.

    :param namespace: the entry-point namespace searched
    :param name: the plugin name asked for
    :param reason: what is missing or wrong

    .. versionadded:: 0.1
    """

    def __init__(self, namespace: str, name: str, reason: str) -> None:
        self.namespace = namespace
        self.name = name
        self.reason = reason
        super().__init__(f"plugin {name!r} in {namespace!r}: {reason}")
        self._reduce_args = (namespace, name, reason)


class CacheError(StoreError):
    """A cache backend failed in a way its caller must hear about.

    :param uid: the cache entry concerned
    :param reason: what went wrong

    .. versionadded:: 0.1
    """

    def __init__(self, uid: str, reason: str) -> None:
        self.uid = uid
        self.reason = reason
        super().__init__(f"cache entry {uid!r}: {reason}")
        self._reduce_args = (uid, reason)
