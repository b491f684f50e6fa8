"""Online features with offline backfill: one definition, two exact implementations.

- `definitions`: what to compute (`Aggregate`, `Derived`, `FeatureSet`, `default_feature_set`).
- `layout`: how state is tiled and stored (customer blob, shared BITFIELD blocks).
- `kernels`: the floating-point arithmetic both paths share (so they agree bit for bit).
- `seen`: first-seen sets (exact, then Bloom filters), one `replay` both paths call.
- `trends`: daily means of the customer's bounded history (amount trend, rising days).
- `online`: `FeatureEngine` (Valkey: per batch one read and one write, pipelined), with
  `batch` (keys, read, point-in-time compute), `write` (blob updates, block increments),
  `resp` (the batch's commands encoded as protocol bytes) and `wire` (the connection).
- `offline`: `backfill` (vectorised over a whole history).
- `sample`: a small synthetic history for tests and benchmarks.

Semantics, in short:

Windows are tiled. A window of ``w`` over tiles of ``t`` (hourly for ``…h`` windows, daily
for ``…d``) is the ``w / t`` tiles ending with the transaction's own tile: the transaction
and everything processed before it in those tiles. So ``customer_tx_count_1h`` counts the
current clock hour so far (0-60 min of history), ``…_24h`` the current hour and the 23
before (23-24 h), ``…_7d`` today so far and the 6 previous UTC days. The edge error is at
most one tile, always on the old side, and the backfill reproduces it exactly. A delay of
``d`` shifts the window to end ``d + 1`` tiles earlier: ``terminal_risk_7d_delay7d`` on day
``D`` covers days ``D-14 … D-8``, counting the frauds whose label was reported by the
transaction's own time (the Handbook's ``[t - delay - w, t - delay)``, tiled).

Aggregations: count, sum, mean, std (per entity), fraud count and risk (terminals, from
labels), and for the customer (a single writer) min, max and ``distinct`` (approximate
distinct merchants / terminals / cards / devices / IPs / categories: a 64-bit sketch per
tile, OR-ed over the window, read by linear counting). Shared entities take only commutative
counters. "last" is not an aggregation: the window includes the transaction itself, so its
last value is the transaction's own; the previous one is ``seconds_since_last_tx`` and the
bounded history behind the ``…_prev`` ratios.

Amounts are integer cents in state, timestamps integer microseconds, so sums are exact and
order-independent; ratios, means and deviations are computed by `kernels` from those exact
inputs in both paths. No amount can overflow them: a transaction's cents are clipped to
[0, 5,497,558,138.87] (`layout.S_CAP`, the width of a shared tile's sum), and every sum of
amounts — a tile's, online or in a shared block (``BITFIELD … OVERFLOW SAT``), a window's —
saturates there instead of wrapping, in both paths alike. Zero amounts are ordinary: a
ratio to a reference amount of zero (the customer's mean, median or max) takes it as one
cent, so no feature is NaN or infinite because of a zero.

First seen (`FirstSeen`): ``is_first_seen_merchant`` … is 1.0 when the customer has not
used the value in its earlier transactions (earlier ones of its own batch included), 0.0 when
it has, NaN when the transaction lacks the field. "Earlier" is bounded: the customer blob
keeps two generations of ``words`` 64-bit words per field, an exact set of value hashes while
small, then a Bloom filter; a value unused for about ``capacity`` distinct others is
forgotten, and a new value reads as seen with probability below ``fp_rate``. The backfill
replays the same sets, so it reproduces the Bloom false positives exactly.

Novelty of place: ``is_first_seen_terminal`` also marks the customer's history: each kept
entry carries whether its transaction was at a terminal new to the customer when it was
processed (the top bit of its id hash, `layout.NEW_PLACE`: no byte more). So
``customer_new_terminal_tx_count_1d`` / ``…_7d`` count the transaction and the customer's
kept ones of the last 24 h / 7 days (exact, ``[t - window, t]``, bounded by the ``history``
entries) at terminals new to it, and ``customer_new_terminal_share_7d`` is the share of
their amount spent there (0 when they spent nothing). A takeover paying where the card
never did, at usual amounts and hours, shows as a share near 1 for days, where a settled
customer's is near 0. The flag is kept as the transaction was processed, so these features
follow the arrival order when a customer's transactions reach a terminal out of event-time
order (the first *arrival* there is the new one; see "Out of order").

Co-visitation (`fraudstream.features.neighbours`): ``terminal_covisit_share`` tells how far
a terminal lies from the customer's usual ones without coordinates. Terminals used by the
same customers are near each other, so over a period of history (30 days) each terminal
keeps a 2048-bit sketch of its customers (a terminal with 60 or more is a hub: an
e-commerce merchant, which links everyone, marked without a sketch) and each customer the
OR of its terminals' sketches; the feature is the share of the terminal's bits set in the
customer's (~1 in the customer's own area, ~0 where none of the terminal's customers ever
met it: an account takeover's new terminals). NaN for a hub, an unknown terminal or a
customer without a sketch. Static like the profiles: built offline (`train` and `evaluate`
from the 30 days before the training window), loaded online by ``fraudstream features
load-neighbours``, read in the batch's ``MGET``.

Ratios (`Derived` with a ``base`` window; an empty window, i.e. the transaction itself not
counted, gives NaN; a zero mean as reference counts as one cent): a terminal's recent mean
amount over its own 28-day mean (``terminal_amount_mean_ratio_1d_28d``, ``…_7d_28d``), the
amount over that mean (``terminal_amount_ratio_mean_28d``), its count today over its mean
daily count (``terminal_tx_count_ratio_1d_28d`` = n_1d · 28 / n_28d), and the customer's
recent mean over its 30-day one (``customer_amount_mean_ratio_1d_30d``, ``…_3d_30d``). Trends
come from the customer's bounded history (`fraudstream.features.trends`):
``customer_amount_trend_7d`` (least-squares slope of the daily mean amount over the last 7
days, over the mean of those daily means; NaN under two days) and
``customer_rising_days_14d`` (successive days with payments, back from today, each with a
higher mean than the one before), the same two over each day's largest amount
(``customer_amount_max_trend_7d``, ``customer_rising_max_days_14d``), and the amount against
the median of the kept entries older than 3 days (``customer_amount_ratio_median_before_3d``:
a ramp's last days measured against the customer's usual before it, which the ``…_prev``
ratios, fed by the ramp itself, lose sight of; NaN without such entries).

Point in time and order: a transaction sees the state built by the transactions processed
before it (earlier batches, and earlier ones of its own batch) and itself, then updates it.
The backfill processes a history in ``(timestamp, input row)`` order.

Out of order: online, transactions may arrive out of event-time order (within the
lateness), and the state they leave does not depend on that order (but for the flags of
new terminals, see "Novelty of place"): tiles add (or take the min, max, OR), the
customer's history keeps its ``history`` newest transactions *by event
time*, its "last" time and place are the newest by event time (equal times: the later
arrival, as offline the later row; `fraudstream.features.history`). So a transaction gets
exactly the backfill's features when the transactions of its customer, card, terminal …
that precede it in event time all arrived before it and none that follow it did (the
parity tests shuffle arrival and check every such one, and a transaction after all). For
the others exact parity is impossible by definition: a late transaction, or one that
arrived before an earlier one of the same entity, shares tiles with transactions that
cannot be taken out (or misses one not yet arrived). A late transaction sees the state as
stored, later transactions included; its "last" features measure it against its
customer's newest transaction, the gap taken as positive (so the speed between the two is
checked once online, as it is offline on the later one). First-seen sets are
order-independent while exact, and as Bloom filters until a generation rotates: a late
value arriving after its generation rotated is remembered one generation longer.

Idempotency: the customer blob keeps the 64-bit id hashes of its ``history`` newest
transactions; a transaction found there (or earlier in the batch) is scored but changes
nothing. One not newer than all of a full history may be a redelivery of one dropped from
it (after ``history`` newer ones, e.g. a card-testing burst): it is refused as late, so a
redelivery never counts twice, with no more state; a new transaction that late within a
burst is not stored either (`fraudstream.features.history`). The batch's writes go in one
``MULTI``/``EXEC``, so a crash leaves all or nothing of a batch.
Labels are applied once per transaction id (a marker key set ``NX`` by the label function).

Unreadable state: a customer blob of another size or layout version (`BLOB_VERSION`) —
corrupt, or left by another release or feature set — holds up nobody: that customer is
read as new (its transactions scored without history, the batch's write replacing the
blob), counted (`EngineStats.reset`) and logged; the rest of the batch is untouched. An
unreadable profile, neighbourhood record or terminal known-fraud stamp reads as none
(logged; the next label replaces the stamp).

Concurrency: shared entities (card, terminal, merchant, device, IP) take commutative
``BITFIELD INCRBY`` only, so any number of workers can update them. The customer blob has a
single writer (partitions are keyed by customer); the engine ``WATCH``es the batch's customer
keys, so a second writer makes ``EXEC`` fail, nothing of that batch is written, and
`FeatureStoreError` is raised.

Pipelining: a batch's write is sent without waiting for it. `FeatureEngine.submit` returns
the features while the server applies it; the next batch's read goes on the same connection
right behind it (so it sees it, and the server goes from one to the other without waiting
for the client), and `confirm`, or that next batch, collects the write's outcome before its
state is relied on. `compute_batch` is ``submit`` + ``confirm``. `start` / `finish` split a
batch around its read, so one process can keep batches of two customer partitions in flight
(one engine each): the client computes one while the server serves the other. Labels can go
ahead of a batch's read in the same round trip. A failed write (another writer) is raised by
`confirm` or by the next batch (nothing of it stored, nor of the next); a worker confirms
before it acknowledges its input.

Cluster: every key of an entity shares a hash tag (``{c:ID}``, ``{t:ID}`` …), so an entity
lives in one slot, and the engine takes a `redis.cluster.RedisCluster` as well. A cluster
runs no multi-key command or ``MULTI`` across slots, so there a batch reads with one ``GET``
per key (pipelined per node) and writes in two steps: each customer's state with a
compare-and-set on its ``seq`` (the ``fs_put`` function; a customer changed by another
writer keeps its state, its transactions count nowhere and `FeatureStoreError` is raised),
then the shared increments of the transactions whose customer was stored. A retry finds the
stored ones already applied. What a single node gives and a cluster cannot: a crash between
the two steps loses that batch's shared increments (it never double-counts them). Tested on
a three-node cluster: parity with the backfill, and a concurrent writer.

Memory: a customer's state is one 4,015-byte blob (MEMORY USAGE 4,064 bytes with its key),
whatever its history: tile rings 1,392 (32 daily tiles of count, cents, squared cents; 26
hourly tiles of count, cents; 26 hourly tiles of zero-amount counts), the 64 newest
transactions 1,280 (time to the second, cents clipped at 21,474,836.47, home cell, id hash
with the new-terminal flag), first-seen sets 1,300 (terminals 260), the rest 43. A profile
adds 29 bytes, a neighbourhood 258 per customer and per terminal (2 per hub); a shared
entity holds at most three tile blocks (512 bytes each, hourly or daily; a terminal's daily
ones 1,024: count and cents in one word, frauds in another).

Lateness: a transaction older than its customer's newest stored one by more than
``lateness_s`` is scored against the current state but not stored (`EngineStats.late`).
The watermark is the customer's, read with its state, so every process (a worker running
for days, one just started, the API) decides alike; a customer without state takes any
transaction. Within the lateness, a transaction lands in its own tile. A label whose
transaction's tile has left the ring is ignored (`EngineStats.labels_late`); the backfill
drops the same labels.
"""

from __future__ import annotations

from fraudstream.features.context import EngineStats
from fraudstream.features.definitions import (
    Aggregate,
    Derived,
    FeatureSet,
    FirstSeen,
    default_feature_set,
)
from fraudstream.features.offline import FeatureRows, backfill, backfill_rows
from fraudstream.features.online import FeatureEngine
from fraudstream.features.wire import FeatureStoreError

__all__ = [
    "Aggregate",
    "Derived",
    "EngineStats",
    "FeatureEngine",
    "FeatureSet",
    "FeatureStoreError",
    "FirstSeen",
    "FeatureRows",
    "backfill",
    "backfill_rows",
    "default_feature_set",
]
