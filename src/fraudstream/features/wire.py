"""One round trip for many commands, with the per-command client cost cut to ~1 µs.

redis-py's pipeline costs ~7-11 µs of Python per command (measured in
``benchmarks/bench_features.py``); a feature batch sends thousands (one ``BITFIELD`` per
shared tile block, one ``SET`` per customer). Here commands arrive already encoded (`Packed`,
from `fraudstream.features.resp`) or are packed by hiredis in C, and the replies are parsed
by a hiredis ``Reader`` straight from the connection's socket, on a connection borrowed from
the client's own pool (same auth, TLS, db). A `Session` can have several sends in flight
(`Session.send`, then `Session.receive` once per send, in order). On a cluster client
(`redis.cluster.RedisCluster`) `Wire.run` takes redis-py's cluster pipeline, which routes
each single-key command to its slot's node: the engine's `fraudstream.features.route.NodeWire`
sends a round trip per node instead and falls back on it when a slot moved. A cluster
cannot run one ``MULTI`` across slots, so ``atomic`` is refused there.
"""

from __future__ import annotations

import select
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol

import hiredis
import numpy as np
import redis
from numpy.typing import NDArray
from redis.cluster import RedisCluster

from fraudstream.errors import FraudstreamError

Command = tuple[Any, ...]


class Packed(NamedTuple):
    """Commands already in protocol bytes (`fraudstream.features.resp`), sent as they are."""

    data: bytes | NDArray[np.uint8]
    commands: int
    watches: bool = False
    """It holds a ``WATCH`` (the connection must be unwatched before it is given back)."""


class Riders(Protocol):
    """Another stage's commands sent in a batch's read round trip (`FeatureEngine.submit`),
    so the batch waits on the server once: `fraudstream.lookup.LookupQuery` (the registry
    pointers and the list lookups), `fraudstream.stream.decided.Undecided` (the API's
    idempotency check). Single-key commands, so a cluster routes each one."""

    @property
    def commands(self) -> Sequence[Command]: ...

    def deliver(self, replies: list[Any]) -> None:
        """Their replies in order (errors as exception objects), received before the batch
        writes anything: raising abandons the batch, nothing of it is written."""


class Together:
    """Several stages' riders as one: their commands in order, each given its replies."""

    def __init__(self, *riders: Riders) -> None:
        self.riders = riders
        self.commands = [c for r in riders for c in r.commands]

    def deliver(self, replies: list[Any]) -> None:
        start = 0
        for r in self.riders:
            n = len(r.commands)
            r.deliver(replies[start : start + n])
            start += n


class FeatureStoreError(FraudstreamError):
    """The feature state in Valkey could not be read or written consistently."""


class WatchConflict(FeatureStoreError):
    """``EXEC`` found a ``WATCH``ed key changed by someone else; nothing was written."""


class StateConflict(FeatureStoreError):
    """Another writer changed a customer's state while a batch was computed from it, so the
    batch's state was not stored (on one node: nothing of it; on a cluster: those customers'
    transactions). Computing the batch again from the new state is the remedy: another API
    process or worker scoring the same customer at the same moment is over within a batch."""


Client = redis.Redis | RedisCluster


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)


class Wire:
    """Send a list of commands in one write, read all replies in one pass."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.spin_s = 0.0
        """How long a session polls for a reply before it sleeps on the socket (`Session`:
        the API sets it; a worker, whose other lane computes meanwhile, leaves it at 0)."""
        self._buffers: list[bytearray] = []
        """Receive buffers of closed sessions, for the next ones (`Session.close`)."""

    def run(self, commands: Sequence[Command], *, atomic: bool = False) -> list[Any]:
        """Replies in order (errors as exception objects); with ``atomic`` the commands run
        inside ``MULTI``/``EXEC``.

        Raises:
            FeatureStoreError: the connection failed or ``EXEC`` was aborted.
        """
        if isinstance(self.client, RedisCluster):
            if atomic:
                raise FeatureStoreError("a cluster cannot run one transaction across slots")
            return self._run_cluster(self.client, commands)
        with self.session() as session:
            return session.run(commands, atomic=atomic)

    @staticmethod
    def _run_cluster(client: RedisCluster, commands: Sequence[Command]) -> list[Any]:
        pipe = client.pipeline(transaction=False)  # type: ignore[no-untyped-call]
        for command in commands:
            pipe.execute_command(*command)
        try:
            return list(pipe.execute(raise_on_error=False))
        except redis.RedisError as exc:
            raise FeatureStoreError(f"feature state round trip failed: {exc}") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A connection held for several round trips (``WATCH`` … ``EXEC`` need one)."""
        session = self.open()
        try:
            yield session
        except BaseException:
            session.close(broken=True)
            raise
        session.close()

    def open(self) -> Session:
        """A connection borrowed from the client's pool until `Session.close`."""
        assert isinstance(self.client, redis.Redis), "a session needs a single-node client"
        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            pool.release(conn)
            raise
        return Session(conn, pool, self._buffers, self.spin_s)


RECV_BUFFER = 1 << 18
"""Bytes a session reads from its socket at a time."""


class Session:
    """Round trips on one borrowed connection; `send` and `receive` apart let the caller
    work while the server executes (`FeatureEngine.submit`).

    With ``spin_s`` a reply not there yet is polled for (``poll`` with no timeout, the GIL
    let go each time) for up to that long before the thread sleeps in ``recv``. A thread
    that sleeps waits for the kernel to wake it as well as for the server: a lone ``GET``
    on this 2-core host took a median 87 µs sleeping, 50 µs polling (scratch measurement,
    5,000 round trips each, alternated). An API request makes two or three such round
    trips, each on the path of its answer."""

    def __init__(
        self, conn: Any, pool: Any, spare: list[bytearray] | None = None, spin_s: float = 0.0
    ) -> None:
        self.conn = conn
        self.pool = pool
        self.spin_s = spin_s
        self.watching = False
        self._spare = [] if spare is None else spare
        """Where the receive buffer comes from and goes back to on `close` (a session a
        batch: zeroing a fresh 256 KB each time costs ~5 µs, and evicts the CPU cache).
        list.pop and list.append are atomic: threads sharing a `Wire` never share one."""
        try:
            self._buffer = self._spare.pop()
        except IndexError:
            self._buffer = bytearray(RECV_BUFFER)
        self._closed = False
        self._reader = hiredis.Reader()
        self._owed: deque[tuple[int, bool]] = deque()
        """Per `send` not yet received, in order: replies owed, and whether atomic."""

    def run(self, commands: Sequence[Command], *, atomic: bool = False) -> list[Any]:
        if not commands:
            return []
        self.send(commands, atomic=atomic)
        return self.receive()

    def send(self, commands: Sequence[Command | Packed], *, atomic: bool = False) -> None:
        """Queue ``commands`` on the server without waiting (the socket buffer takes a
        whole batch's ~2 MB at once); `receive` collects their replies, one call per
        `send`, in order."""
        cmds = [("MULTI",), *commands, ("EXEC",)] if atomic else list(commands)
        # One buffer, one write: sent in parts, the server reads (and wakes up) per part.
        parts: list[Any] = [
            c.data if isinstance(c, Packed) else hiredis.pack_command(c) for c in cmds
        ]
        payload = b"".join(parts)
        try:
            sock = getattr(self.conn, "_sock", None)
            if sock is None:  # pragma: no cover - exotic transports
                self.conn.send_packed_command(payload)
            else:
                sock.sendall(payload)
        except (OSError, redis.RedisError) as exc:
            raise FeatureStoreError(f"feature state round trip failed: {exc}") from exc
        watches = any(c.watches if isinstance(c, Packed) else c[0] == "WATCH" for c in cmds)
        self.watching = (self.watching or watches) and not atomic
        count = sum(c.commands if isinstance(c, Packed) else 1 for c in cmds)
        self._owed.append((count, atomic))

    def receive(self) -> list[Any]:
        """Replies of the oldest `send` not yet received, in order (errors as exception
        objects); for an atomic one, the replies of the commands inside ``EXEC``.

        Raises:
            WatchConflict: ``EXEC`` found a watched key changed.
            FeatureStoreError: the connection failed or ``EXEC`` was aborted.
        """
        count, atomic = self._owed.popleft()
        try:
            replies = self._read(count)
        except (OSError, redis.RedisError) as exc:
            raise FeatureStoreError(f"feature state round trip failed: {exc}") from exc
        if not atomic:
            return replies
        result = replies[-1]
        if result is None:
            raise WatchConflict("a watched key changed: the transaction was not applied")
        if not isinstance(result, list):
            raise FeatureStoreError(f"feature state transaction aborted: {result!r}")
        return result

    def close(self, *, broken: bool = False) -> None:
        """Give the connection back to the pool: unwatched, or dropped when the exchange
        broke off (or replies are still owed), so nobody reads another's replies."""
        try:
            if not broken and not self._owed and self.watching:
                self.run([("UNWATCH",)])
        except BaseException:
            broken = True
            raise
        finally:
            if broken or self._owed:
                self.conn.disconnect()
            self.pool.release(self.conn)
            if not self._closed:  # its bytes are never read past `_read`: reusable as is
                self._closed = True
                self._spare.append(self._buffer)

    def _read(self, count: int) -> list[Any]:
        sock = getattr(self.conn, "_sock", None)
        if sock is None:  # pragma: no cover - exotic transports
            return [self.conn.read_response(disable_decoding=True) for _ in range(count)]
        reader, buf = self._reader, self._buffer
        out: list[Any] = []
        while True:  # what the reader holds may already complete this send's replies
            while len(out) < count and (reply := reader.gets()) is not False:
                out.append(reply)
            if len(out) == count:
                return out
            if self.spin_s:
                _poll_until_readable(sock, self.spin_s)
            size = sock.recv_into(buf)
            if not size:
                raise redis.ConnectionError("connection closed by server")
            reader.feed(buf, 0, size)  # type: ignore[arg-type]


def _poll_until_readable(sock: socket.socket, for_s: float) -> None:
    """Return once ``sock`` has bytes to read, or ``for_s`` seconds have passed."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    end = time.perf_counter() + for_s
    while not poller.poll(0) and time.perf_counter() < end:
        pass


@contextmanager
def as_redis_error() -> Iterator[None]:
    """A failed round trip raised as redis-py raises one (`redis.ConnectionError`), for the
    stream's readers and writers whose retry loops catch redis-py's errors."""
    try:
        yield
    except FeatureStoreError as exc:
        raise redis.ConnectionError(str(exc)) from exc


def first_error(replies: Sequence[Any]) -> Exception | None:
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    return None


def raise_first_error(replies: Sequence[Any]) -> None:
    """Raise a rider's first failed reply as a pipeline would (`redis.RedisError` as it
    is; hiredis's own error type, from a raw read, as `redis.ResponseError`).

    Raises:
        redis.RedisError: a reply is an error.
    """
    err = first_error(replies)
    if err is None:
        return
    raise err if isinstance(err, redis.RedisError) else redis.ResponseError(str(err))


FUNCTIONS = """#!lua name=fraudstream_features
-- fs_label: apply one fraud label to a terminal, once.
--   KEYS[1]  marker key  ({t:ID}:lb:TXID)   set NX: a label already seen changes nothing
--   KEYS[2]  known-fraud key ({t:ID}:kf)    "first_us:last_us" event times of known frauds
--   KEYS[3..] tile blocks holding the transaction's tile, one per labelled family
--   ARGV[1]  marker TTL (s)     ARGV[2] transaction event time (us)    ARGV[3] kf TTL (s)
--   ARGV[1+3i], ARGV[2+3i], ARGV[3+3i]  (i = 1..#KEYS-2) bit offset of the tile's int64 word,
--            increment (1 << shift of the fraud counter in the word), block TTL (s)
-- Returns 1 if applied, 0 if it was a duplicate.
local function fs_label(keys, args)
  if not redis.call('SET', keys[1], '1', 'NX', 'EX', args[1]) then return 0 end
  local t = tonumber(args[2])
  local first, last = t, t
  local kf = redis.call('GET', keys[2])
  local a, b = string.match(kf or '', '^(%-?%d+):(%-?%d+)$')
  if a then  -- an unreadable value is replaced
    first = math.min(tonumber(a), t)
    last = math.max(tonumber(b), t)
  end
  redis.call('SET', keys[2], string.format('%d:%d', first, last), 'EX', args[3])
  for i = 3, #keys do
    local a = 3 * (i - 2)
    local fresh = redis.call('EXISTS', keys[i]) == 0
    redis.call('BITFIELD', keys[i], 'OVERFLOW', 'WRAP', 'INCRBY', 'i64', args[a + 1], args[a + 2])
    if fresh then redis.call('EXPIRE', keys[i], args[a + 3]) end
  end
  return 1
end
redis.register_function{function_name = 'fs_label', callback = fs_label}

-- fs_put: write a customer's state if nobody changed it since it was read (the cluster path;
-- a single node WATCHes the batch's customers instead).
--   KEYS[1] customer key   ARGV[1] the seq bytes read (offsets 2-5; "" = the key was absent)
--   ARGV[2] the new state  ARGV[3] TTL (s)
-- Returns 1 if written, 0 if the state changed meanwhile (then nothing is written).
local function fs_put(keys, args)
  if redis.call('GETRANGE', keys[1], 2, 5) ~= args[1] then return 0 end
  redis.call('SET', keys[1], args[2], 'EX', args[3])
  return 1
end
redis.register_function{function_name = 'fs_put', callback = fs_put}
"""
"""Labels are rare (about one per hundred transactions), so a script per label is cheap;
it makes "seen once" and the three updates atomic."""
