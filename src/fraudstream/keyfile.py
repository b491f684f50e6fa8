"""Secrets kept in files of the data dir: created once, readable by this user only.

The embedded Valkey's password, the HTTP API key and the model registry's signing key all live
this way: generated on first use (the registry key only by the command that stores the first
model), written with mode 0600 (never world-readable, not even for a moment), and read back by
every later command.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (replacing any previous content)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def create_secret(path: Path, nbytes: int = 32) -> bool:
    """Create ``path`` holding a new URL-safe secret of ``nbytes`` random bytes, unless it
    exists; True when this call created it (of two racing callers, exactly one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(nbytes) + "\n")
    return True


def read_or_create(path: Path, nbytes: int = 32) -> str:
    """The secret in ``path``; if there is none, a new URL-safe one of ``nbytes`` random bytes.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "k"
    >>> read_or_create(p) == read_or_create(p) and oct(p.stat().st_mode & 0o777)
    '0o600'
    """
    if not path.exists():
        create_secret(path, nbytes)
    return path.read_text().strip()
