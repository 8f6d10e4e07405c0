"""What the store kit says when a driver breaks its rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typing_extensions import override

from e3_typed_store.backends.file_store import FileStoreQuery

from . import test_store_contracts as contracts


class _NothingToServe(contracts.TestFileStore):
    """A store whose good query names a file the mirror does not have."""

    __test__ = False

    @override
    def good_query(self, tmp_path: Path) -> FileStoreQuery:
        return {"path": "res.tgz", "sha256": contracts.SHA256}


_RULES: dict[str, Callable[[_NothingToServe, Path], None]] = {
    "hit survives removal": _NothingToServe.test_hit_survives_removal_of_first_dest,
    "corrupted copy": _NothingToServe.test_corrupted_cached_file_is_fetched_again,
}


@pytest.mark.parametrize("rule", _RULES)
def test_a_first_download_that_fails_is_named(rule: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"returned None \(first call\)"):
        _RULES[rule](_NothingToServe(), tmp_path)
