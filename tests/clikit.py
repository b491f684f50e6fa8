"""Run ``python -m fraudstream`` as a user does: a subprocess, its output captured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    valkey_url: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``env`` adds to the test's environment; ``valkey_url`` sets FRAUDSTREAM_VALKEY_URL."""
    extra = {**(env or {}), **({"FRAUDSTREAM_VALKEY_URL": valkey_url} if valkey_url else {})}
    return subprocess.run(
        [sys.executable, "-m", "fraudstream", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **extra},
        cwd=cwd,
    )
