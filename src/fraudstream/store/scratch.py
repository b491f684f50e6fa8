"""A throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl`` on a temp dir, unix socket only),
for the store's tests and its benchmark: nothing to configure, nothing left behind.

Debian installs the server binaries outside ``PATH`` (``/usr/lib/postgresql/<v>/bin``); they
are found there. ``initdb`` refuses to run as root, so as root the cluster belongs to the
``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from fraudstream.errors import StoreError

INSTALL_HINT = "install PostgreSQL (Debian: apt-get install -y postgresql), or `make postgresql`"


def find_bin(name: str) -> Path:
    """``name`` on ``PATH``, else in the newest ``/usr/lib/postgresql/*/bin``.

    Raises:
        StoreError: not installed.
    """
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise StoreError(f"{name}: not found; {INSTALL_HINT}")
    return Path(candidates[-1])


class ScratchPostgres:
    """Start with `start`, connect with `url`, throw away with `stop`."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        """``fsync`` on (benchmarks); tests trade durability for speed, like a RAM disk."""
        self.dir = Path(tempfile.mkdtemp(prefix="fraudstream-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/postgres?host={self.dir}"

    def start(self) -> ScratchPostgres:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")
        self.pg_ctl("start", "-w", "-o", self._server_options(), "-l", str(self.dir / "log"))
        return self

    def pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), *args)

    def stop(self) -> None:
        """Stop now (``immediate``: a crash as far as clients can tell)."""
        self.pg_ctl("stop", "-m", "immediate", "-w")

    def destroy(self) -> None:
        try:
            self.stop()
        except StoreError:
            pass  # already stopped (a test stopped it to play a database outage)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _server_options(self) -> str:
        fsync = "on" if self.durable else "off"
        return f"-c listen_addresses='' -c unix_socket_directories={self.dir} -c fsync={fsync}"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(find_bin(tool)), *args], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise StoreError(f"{tool}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
