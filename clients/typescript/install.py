"""`npm ci` in clients/typescript, only when package-lock.json changed since the last one.

Used by `make openapi` and by tests/test_typescript_client.py. The lock's SHA-256 is kept in
node_modules/.lock-sha256; an flock serialises concurrent runs (two test sessions in one
checkout). Exits 1 with a message when npm is not on PATH.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK = HERE / "package-lock.json"
STAMP = HERE / "node_modules" / ".lock-sha256"


def lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def installed() -> bool:
    return STAMP.exists() and STAMP.read_text().strip() == lock_digest()


def ensure(npm: str | None = None) -> bool:
    """Install when needed; False when npm is missing."""
    npm = npm or shutil.which("npm")
    if npm is None:
        return False
    with open(HERE / ".install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not installed():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE,
                check=True,
                timeout=600,
            )
            STAMP.write_text(lock_digest() + "\n")
    return True


if __name__ == "__main__":
    if not ensure():
        print(
            "npm is not on PATH: install Node.js 20+ to build clients/typescript", file=sys.stderr
        )
        sys.exit(1)
