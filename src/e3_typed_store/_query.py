"""Validation of query values, shared by the drivers."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

from e3_typed_store._hashing import ALGORITHMS, Algorithm, normalize_digest
from e3_typed_store.errors import InvalidQueryError

__all__ = ["digest_value", "host_problem", "optional_str", "required_str", "split_url"]

# The longest label of a host name, in bytes (RFC 1035).
_MAX_LABEL = 63


def split_url(url: str) -> SplitResult:
    """Split *url* as ``urlsplit`` does, its host and port checked.

    :raises ValueError: the host is malformed (``[::1``), or the port is not a
        number in range, or is 0, which urllib3 takes for no port at all and
        replaces with the scheme's default one
    """
    parts = urlsplit(url)
    _ = parts.hostname  # raises on a malformed IPv6 host
    if parts.port == 0:  # raises on a port that is not a number in range
        raise ValueError("port 0 names no server")
    return parts


def host_problem(host: str) -> str | None:
    """Why no request can be made to *host*, as the HTTP client would find
    it only when asked to connect; None when it can be asked for.

    A non-ASCII name is checked as the client checks it: each of its labels
    as urllib3 encodes it (IDNA 2008, strict, no mapping), then the whole name
    as requests does (with UTS #46 mapping). The ``idna`` module is imported
    for such names only.
    """
    if host.isascii():
        if host.startswith(("*", ".")):
            return "the host is not a valid name"
        # A name's labels, as the resolver takes them: none empty (a..b), none
        # over 63 bytes; one final dot is the root's. An address (127.0.0.1,
        # ::1) passes.
        labels = host.removesuffix(".").split(".")
        if any(not label or len(label) > _MAX_LABEL for label in labels):
            return (
                "the host is not a valid name (an empty label, or one of over 63 bytes)"
            )
        return None
    try:
        host.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: a byte of the command line that is no UTF-8.
        return "the host is not text (a byte that is no UTF-8)"
    import idna

    try:
        for label in host.split("."):
            if not label.isascii():
                idna.encode(label.lower(), strict=True, std3_rules=True)
        idna.encode(host, uts46=True)
    except idna.IDNAError as exc:
        return f"the host is not a valid internationalized name: {exc}"
    return None


def required_str(query: Mapping[str, object], key: str) -> str:
    """Return the non-empty string under *key*.

    :param query: the query
    :param key: the key to read
    :raises InvalidQueryError: the key is missing, not a string, or empty
    """
    if key not in query:
        raise InvalidQueryError.missing(key)
    value = query[key]
    if not isinstance(value, str):
        raise InvalidQueryError(
            key, value, f"expected a string, got {type(value).__name__}"
        )
    if not value:
        raise InvalidQueryError(key, value, "must not be empty")
    return value


def optional_str(query: Mapping[str, object], key: str) -> str | None:
    """Return the string under *key*, or None when the key is absent.

    :param query: the query
    :param key: the key to read
    :raises InvalidQueryError: the key is present but not a non-empty string
    """
    if key not in query:
        return None
    return required_str(query, key)


def digest_value(key: str, algorithm: Algorithm, value: object) -> str:
    """Return *value* as a lower-case hex digest of *algorithm*.

    :param key: the query key the value came from, for the error message
    :param algorithm: the digest algorithm
    :param value: the candidate digest, in any case (anything: metadata built
        by hand with runtime checks off may hold None)
    :raises InvalidQueryError: the value is not hex of the algorithm's length
    """
    if not isinstance(value, str):
        raise InvalidQueryError(
            key, value, f"expected a string, got {type(value).__name__}"
        )
    digest = normalize_digest(algorithm, value)
    if digest is None:
        raise InvalidQueryError(
            key,
            value,
            f"expected a {algorithm} digest: hex of length {ALGORITHMS[algorithm]}",
        )
    return digest
