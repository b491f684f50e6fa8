"""`fraudstream serve --workers N`: N processes on one port, every one answering, all of them
stopped by one SIGTERM to the parent."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import pytest

from apikit import KEY, get, post, sample_tx, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY_S = 60.0
"""How long to ask ``/readyz`` before giving up on hearing from every process (the second
may still be building its scorer, kernels loaded, when the first answers: a count of tries
ran out in ~2 s on a loaded host, before a slow child could answer)."""


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        kids = {p for p, pp in parents.items() if pp == parent}
        found |= kids
        todo += kids
    return found


def answering_pids(base: str, want: int) -> set[int]:
    """The pids ``/readyz`` names, one fresh connection each, until ``want`` distinct ones."""
    pids: set[int] = set()
    deadline = time.monotonic() + READY_S
    while len(pids) < want and time.monotonic() < deadline:
        status, body = get(base, "/readyz", key=None)
        if status == 200:
            pids.add(body["pid"])
        else:
            time.sleep(0.01)
    return pids


def test_serve_workers_answers_from_each_process_and_stops_them_all(
    tmp_path: Path, valkey_url: str
) -> None:
    proc, base = start_server(valkey_url, tmp_path, KEY, args=["--workers", "2"])
    try:
        for i in range(20):
            status, body = post(base, "/v1/score", sample_tx(i))
            assert status == 200 and body["transaction_id"] == f"api-{i}"
        pids = answering_pids(base, 2)
        below = descendants(proc.pid)
        assert len(pids) == 2 and pids <= below and proc.pid not in pids
        exits = {pid: os.pidfd_open(pid) for pid in below}
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    try:
        assert not still_running(exits, timeout_s=10), "left running after SIGTERM"
    finally:
        for fd in exits.values():
            os.close(fd)


def still_running(exits: dict[int, int], timeout_s: float) -> list[int]:
    """The pids whose pidfd (readable once the process ends) is not readable in time."""
    deadline = time.monotonic() + timeout_s
    waiting = dict(exits)
    while waiting and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(waiting.values()), [], [], left)
        waiting = {pid: fd for pid, fd in waiting.items() if fd not in ready}
    return list(waiting)


def test_serve_workers_children_stop_when_the_parent_is_killed(
    tmp_path: Path, valkey_url: str
) -> None:
    proc, base = start_server(valkey_url, tmp_path, KEY, args=["--workers", "2"])
    try:
        pids = answering_pids(base, 2)
        assert len(pids) == 2
        exits = {pid: os.pidfd_open(pid) for pid in pids}
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    proc.kill()  # the supervisor alone, with no chance to stop its children
    proc.wait(timeout=30)
    left = still_running(exits, timeout_s=20)
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    for fd in exits.values():
        os.close(fd)
    proc.communicate(timeout=30)  # its stderr: open until the last child is gone
    assert not left, f"orphaned servers: {left}"


def test_children_accept_connections_with_nodelay() -> None:
    """The socket the children inherit says it is TCP, so asyncio turns Nagle off on every
    connection they accept (else a response's second write waits for a delayed ACK)."""
    import asyncio
    import socket

    import uvicorn

    from fraudstream.api.serving import FACTORY, listening_socket

    config = uvicorn.Config(FACTORY, factory=True, host="127.0.0.1", port=0, workers=2)
    listener = listening_socket(config)

    async def accepted_nodelay() -> int:
        flags: asyncio.Queue[int] = asyncio.Queue()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            flags.put_nowait(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        flag = await asyncio.wait_for(flags.get(), 10)
        writer.close()
        server.close()
        return flag

    assert asyncio.run(accepted_nodelay()) != 0


def test_servers_parse_http_in_c_on_uvloop() -> None:
    """uvicorn falls back to its pure-Python parser and asyncio's loop without a word when
    httptools or uvloop is missing: ~20 % fewer requests a second from one process."""
    import uvicorn
    from starlette.applications import Starlette
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from fraudstream.api.serving import uvicorn_options

    config = uvicorn.Config(Starlette(), **uvicorn_options())
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    factory = config.get_loop_factory()
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def thread_cores(pid: int) -> list[set[int]]:
    """The cores each thread of process ``pid`` may run on."""
    return [os.sched_getaffinity(int(t.name)) for t in Path(f"/proc/{pid}/task").iterdir()]


def test_one_server_process_keeps_its_threads_on_one_core(tmp_path: Path, valkey_url: str) -> None:
    """``serve`` in one process pins itself before its app starts a thread, so the deciding
    thread (started by the first request) shares the event loop's core; with
    ``api_pin_core`` off, or as children of ``--workers 2``, nothing is pinned."""
    allowed = os.sched_getaffinity(0)
    assert len(allowed) >= 2, "this test needs a host of two cores or more"
    one, base = start_server(valkey_url, tmp_path / "one", KEY)
    off, off_base = start_server(valkey_url, tmp_path / "off", KEY, api_pin_core="false")
    many, _ = start_server(valkey_url, tmp_path / "many", KEY, args=["--workers", "2"])
    try:
        for server in (base, off_base):
            assert post(server, "/v1/score", sample_tx(1))[0] == 200  # the thread starts
        pinned = thread_cores(one.pid)
        assert len(pinned) >= 2 and all(c == {max(allowed)} for c in pinned)
        assert all(c == allowed for c in thread_cores(off.pid))
        children = descendants(many.pid)
        assert children and all(c == allowed for p in children for c in thread_cores(p))
    finally:
        said = {}
        for name, proc in (("one", one), ("off", off), ("many", many)):
            proc.terminate()
            said[name] = proc.communicate(timeout=30)[1]
    assert f"on core {max(allowed)})".encode() in said["one"]
    assert b"on core" not in said["off"]
