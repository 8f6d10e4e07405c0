"""Fixtures the HTTP tests of this folder share."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``*_proxy`` variable, whatever the machine running the tests has."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
