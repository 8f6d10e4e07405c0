"""Check every call into e3_typed_store against its annotations (beartype)."""

import os

# Before the first import of e3_typed_store (see its README).
os.environ["E3_TYPED_STORE_RUNTIME_CHECKS"] = "1"
