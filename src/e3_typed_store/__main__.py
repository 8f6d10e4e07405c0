"""``python -m e3_typed_store``: the command line."""

from __future__ import annotations

import sys

from e3_typed_store._cli import main

if __name__ == "__main__":
    sys.exit(main())
