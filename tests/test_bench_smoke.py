"""The benchmark (``python -m bench``) in its smoke mode, so that it cannot rot.

It runs as a user runs it, in a subprocess, with tiny payloads and one
repetition. No timing is asserted: only that it finishes, reports a row for
every contender, and that none of them failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One row per contender; an optional peer that is not installed still has its
# row, saying it was skipped.
CONTENDERS = [
    "raw transfer (requests -> file, no hash)",
    "raw transfer + sha256 inline (one pass, one thread)",
    "curl | openssl dgst -sha256",
    "native raw transfer (C, no hash)",
    "native overlapped fetch (C, OpenSSL sha256 thread)",
    "hash pass, hashlib sha256",
    "hash pass, hashlib sha1",
    "sha256 of the payload in memory (no file, no network)",
    "e3-typed-store cold",
    "e3-typed-store warm, verified hit",
    "e3-typed-store warm, verified hit (sha1 query)",
    "e3-typed-store warm, stat-trusted hit",
    "e3-core cold",
    "e3-core warm (verified hit)",
    "pooch cold",
    "pooch warm (verified hit)",
    "write pass (memory -> new file, no network)",
    "raw transfer over HTTPS (requests -> file, no hash)",
    "e3-typed-store cold over HTTPS",
    "e3-typed-store FileCache: set",
    "e3-typed-store FileCache: get",
    "e3-typed-store FileCache: miss",
    "e3-core FileCache: set",
    "e3-core FileCache: get",
    "e3-core FileCache: miss",
    "diskcache: set",
    "diskcache: get",
    "diskcache: miss",
    "python -c pass (interpreter start)",
    "import e3_typed_store.backends.base (wall)",
    "import e3.store.backends.base (wall)",
    "import e3_typed_store.backends.base (-X importtime)",
    "import e3.store.backends.base (-X importtime)",
    "8 processes, one resource: e3-typed-store",
    "8 processes, one resource: e3-core",
    "stat-trusted hit loop, runtime checks off",
    "stat-trusted hit loop, beartype on",
    "CLI whole-process cache hit: e3-typed-store fetch (verified)",
    "CLI whole-process cache hit: e3-typed-store fetch --trust-unchanged",
    "CLI whole-process cache hit: e3-core one-liner",
]


def test_smoke_run_reports_every_contender(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "E3_TYPED_STORE_RUNTIME_CHECKS"
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    missing = [name for name in CONTENDERS if name not in done.stdout]
    assert not missing, done.stdout
    assert "FAILED" not in done.stdout, done.stdout
    page = tmp_path / "performance.md"
    assert all(name.replace("|", "\\|") in page.read_text() for name in CONTENDERS)

    # The page renders again from the saved results, measuring nothing.
    page.unlink()
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--render-only",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert page.is_file()
