"""Test-wide setup: every test run checks the package's signatures with beartype."""

from __future__ import annotations

import os
import sys

# Must happen before the first import of the package: beartype's import hook
# only decorates modules imported after it is installed.
if "e3_typed_store" in sys.modules:
    raise RuntimeError(
        "e3_typed_store was imported before tests/conftest.py could turn on "
        "runtime checks (a pytest plugin importing it?)"
    )
os.environ["E3_TYPED_STORE_RUNTIME_CHECKS"] = "1"
