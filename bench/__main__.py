"""``python -m bench [--smoke] [...]``: run the benchmark."""

from __future__ import annotations

import os

# Measurements run without beartype's checks (the users' default); the
# "runtime checks" rows turn them on in a subprocess of their own. Dropped
# before anything imports e3_typed_store, which reads it at import time.
os.environ.pop("E3_TYPED_STORE_RUNTIME_CHECKS", None)

from bench.run import main

raise SystemExit(main())
