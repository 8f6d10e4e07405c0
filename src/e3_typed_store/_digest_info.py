"""Resource metadata identified by a digest: what the HTTP and file stores share."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import ClassVar

from e3_typed_store._hashing import ALGORITHMS, Algorithm, file_digest
from e3_typed_store._query import digest_value, required_str
from e3_typed_store._types import override
from e3_typed_store.backends.base import ResourceInfo
from e3_typed_store.errors import InvalidQueryError

__all__ = ["DIGEST_KEYS", "DigestResourceInfo", "query_digest"]

#: Each query key that holds a digest, and the algorithm of that digest.
DIGEST_KEYS: dict[str, Algorithm] = {
    "sha": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
}
_KEY_OF: dict[Algorithm, str] = {
    algorithm: key for key, algorithm in DIGEST_KEYS.items()
}


def query_digest(query: Mapping[str, object]) -> tuple[Algorithm, str]:
    """Return the algorithm and the text of the one digest a query gives.

    :param query: the query
    :raises InvalidQueryError: no digest key, more than one, or a value that
        is not a non-empty string
    """
    present = [key for key in DIGEST_KEYS if key in query]
    if not present:
        raise InvalidQueryError(
            "sha", None, "a digest is required: one of sha, sha256 or sha512"
        )
    if len(present) > 1:
        second = present[1]
        raise InvalidQueryError(
            second, query[second], f"only one digest may be given, {present[0]} is"
        )
    key = present[0]
    return DIGEST_KEYS[key], required_str(query, key)


class DigestResourceInfo(ResourceInfo):
    """Metadata of a resource whose uid is the digest its content must have.

    A subclass says where the resource lies (:meth:`_location_key`) and which
    logger reports a mismatch (:attr:`_logger`).

    :param sha: the hex digest, in any case
    :param algorithm: the algorithm of *sha*
    :raises InvalidQueryError: the digest is malformed
    """

    _logger: ClassVar[logging.Logger] = logging.getLogger("e3.store")

    def __init__(self, sha: str, algorithm: Algorithm) -> None:
        if algorithm not in ALGORITHMS:
            raise InvalidQueryError("algorithm", algorithm, "unknown digest algorithm")
        self._algorithm: Algorithm = algorithm
        self._digest = digest_value(_KEY_OF[algorithm], algorithm, sha)

    @property
    def algorithm(self) -> Algorithm:
        """The digest algorithm."""
        return self._algorithm

    @property
    def digest(self) -> str:
        """The expected digest, lower-case hex."""
        return self._digest

    @property
    @override
    def uid(self) -> str:
        """The expected digest: for a SHA-1, e3-core's uid (in lower case)."""
        return self._digest

    @override
    def verify(self, resource_path: str) -> bool:
        """Hash the file and compare; log e3-core's critical line on a mismatch.

        :param resource_path: the file to check
        :return: True if its digest is the expected one
        :raises OSError: the file cannot be read
        """
        actual = file_digest(resource_path, self._algorithm)
        if actual != self._digest:
            self._logger.critical(
                "wrong sha for resource %s expecting %s got %s",
                resource_path,
                self._digest,
                actual,
            )
            return False
        return True

    @abc.abstractmethod
    def _location_key(self) -> str:
        """Where the resource lies, for equality and hashing."""

    def _identity(self) -> tuple[str, str, str]:
        return (self._location_key(), self._algorithm, self._digest)

    @override
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DigestResourceInfo) or type(other) is not type(self):
            return NotImplemented
        return self._identity() == other._identity()

    @override
    def __hash__(self) -> int:
        return hash(self._identity())
