"""Several worker processes on one host: start them, restart the ones that die, stop them on
a signal, and print a line per process every interval.

The children are subprocesses, ``python -m fraudstream worker --processes 1 --report …``,
rather than ``multiprocessing`` with spawn: each is the very worker users run alone (its
settings, start-up checks, signals and ``kill -9`` recovery are the ones tested), nothing is
pickled, and the supervisor neither imports the scorer nor holds a Valkey connection. Each
child writes its figures to its stdout, a pipe to us (`fraudstream.stream.report`).

Children run in their own session, so a Ctrl-C at the terminal reaches the supervisor alone,
which forwards it once: first SIGINT/SIGTERM, the children finish the batch in hand and exit;
second, they are killed. (Under systemd, ``KillMode=mixed`` lets the supervisor alone
receive the first signal.) The first child is started alone and the others once it works, so a
start-up error (a bad setting, a model that does not load) is printed once and ends the
supervisor with the child's exit code, without restarts.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, TextIO, cast

from fraudstream import metrics
from fraudstream.stream.report import Report, decode_report

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class RestartPolicy:
    """A child that dies is restarted after ``first_delay_s``, doubled at each death in a row
    up to ``max_delay_s``; ``give_up_after`` deaths in a row, each within ``healthy_after_s``
    of its start, stop the supervisor (exit 1)."""

    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    healthy_after_s: float = 60.0
    give_up_after: int = 5

    def delay(self, deaths: int) -> float:
        """
        >>> [RestartPolicy().delay(n) for n in (1, 2, 3, 8, 9)]
        [0.5, 1.0, 2.0, 30.0, 30.0]
        """
        return float(min(self.first_delay_s * 2 ** (deaths - 1), self.max_delay_s))


@dataclass
class Child:
    """One slot of the supervisor: the process currently in it and its history."""

    number: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    deaths: int = 0
    """Deaths in a row, each soon after its start (see `RestartPolicy`)."""
    restart_at: float | None = None
    done: bool = False
    buffer: bytes = b""


class Supervisor:
    """Runs ``command`` (a child's argv) in ``processes`` slots until they are all done."""

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        lines: bool = True,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.command = list(command)
        self.children = [Child(n) for n in range(1, processes + 1)]
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.lines = lines
        self.policy = policy or RestartPolicy()
        self.exit_code = 0
        self.stopping = False
        self._signals = 0
        self._selector = selectors.DefaultSelector()

    def run(self) -> int:
        """Returns the exit code: 0 when every child ended well."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in STOP_SIGNALS}
        self._start(self.children[0])
        try:
            while not all(child.done for child in self.children):
                self._read(timeout=0.1)
                for child in self.children:
                    self._check(child, time.monotonic())
        finally:
            for child in self.children:  # only after an unexpected error in this loop
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.exit_code

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """First signal: the children finish their batch and exit. Second: they are killed."""
        self._signals += 1
        if self._signals > 1:
            self.exit_code = 1
        self._stop(signal.SIGKILL if self._signals > 1 else signal.SIGTERM)

    def _stop(self, sig: signal.Signals) -> None:
        self.stopping = True
        for child in self.children:
            if child.proc is None:
                child.done = True  # not started, or waiting for its restart
                child.restart_at = None
            elif child.proc.poll() is None:
                child.proc.send_signal(sig)

    # --- children ---------------------------------------------------------------------------

    def _start(self, child: Child) -> int:
        proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self._selector.register(proc.stdout, selectors.EVENT_READ, child)
        child.proc, child.started = proc, time.monotonic()
        child.ready, child.restart_at = False, None
        return proc.pid

    def _check(self, child: Child, now: float) -> None:
        """Reap a child that exited; start one whose time has come."""
        if child.proc is not None and child.proc.poll() is not None:
            self._reaped(child, child.proc.returncode, now - child.started)
        elif child.restart_at is not None and now >= child.restart_at and not self.stopping:
            self._say(f"worker {child.number} restarted (pid {self._start(child)})")
        elif not child.started and not child.done and self._first_works():
            self._start(child)

    def _first_works(self) -> bool:
        """The others start once the first is past its start-up (or done already)."""
        first = self.children[0]
        return first.ready or first.done

    def _reaped(self, child: Child, code: int, lived_s: float) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        if not child.proc.stdout.closed:  # what it wrote last, up to its pipe's end
            self._drain(child, child.proc.stdout)
        pid, child.proc, ready, child.ready = child.proc.pid, None, child.ready, False
        metrics.forget_process(pid)  # its gauges (lag) no longer count
        if self.stopping or code == 0:
            child.done = True
            if code not in (0, -signal.SIGTERM):  # SIGTERM kills a child still starting
                self.exit_code = 1
            return
        if not ready and code > 0:  # it printed why; stop without restarts
            self._give_up(child, code, why=None)
            return
        child.deaths = child.deaths + 1 if lived_s < self.policy.healthy_after_s else 1
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        if child.deaths >= self.policy.give_up_after:
            self._give_up(child, 1, why=f"worker {child.number} died {child.deaths} times in a row")
            return
        delay = self.policy.delay(child.deaths)
        child.restart_at = time.monotonic() + delay
        self._say(
            f"worker {child.number} (pid {pid}) died ({how}) after {lived_s:.1f} s; "
            f"restarting in {delay:g} s"
        )

    def _give_up(self, child: Child, code: int, why: str | None) -> None:
        child.done = True
        if why:
            self._say(f"{why}: stopping the others")
        self._stop(signal.SIGTERM)
        self.exit_code = code

    # --- reports ----------------------------------------------------------------------------

    def _read(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            self._drain(key.data, cast(IO[bytes], key.fileobj))

    def _drain(self, child: Child, pipe: IO[bytes]) -> None:
        """Read what the child wrote; at the pipe's end, forget it."""
        fd = pipe.fileno()
        while True:
            try:
                data = os.read(fd, 65_536)
            except BlockingIOError:
                break
            if not data:
                self._selector.unregister(pipe)
                pipe.close()
                break
            child.buffer += data
        *lines, child.buffer = child.buffer.split(b"\n")
        for line in lines:
            self._line(child, line)

    def _line(self, child: Child, line: bytes) -> None:
        report = decode_report(line)
        if report is None:
            self._print(line.decode(errors="replace"))
        elif report.ready:
            child.ready = True
        elif self.lines:
            self._print(describe(child.number, report))

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _say(self, text: str) -> None:
        self.err.write(f"supervisor: {text}\n")
        self.err.flush()


def describe(number: int, report: Report) -> str:
    """The per-process line.

    >>> describe(2, Report(pid=41, tps=1234.5, lag=60, pending=0, p99_ms=8.25, partitions=8))
    'worker 2 pid 41: 1,234 tx/s, lag 60, pending 0, p99 8.2 ms, 8 partitions'
    """
    p99 = "-" if report.p99_ms is None else f"{report.p99_ms:.1f} ms"
    return (
        f"worker {number} pid {report.pid}: {report.tps:,.0f} tx/s, lag {report.lag:,}, "
        f"pending {report.pending:,}, p99 {p99}, {report.partitions} partitions"
    )
