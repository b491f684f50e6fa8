"""Settings: defaults <- ``fraudstream.toml`` <- ``FRAUDSTREAM_*`` environment <- CLI flags.

This is the only module that reads the environment or the config file, and only when the CLI
(or an app factory) calls `load_settings`. Library code receives a frozen `Settings` or plain
arguments, so tests pass values in instead of patching ``os.environ``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from fraudstream.errors import ConfigError
from fraudstream.schema import AMOUNT_CEILING

ENV_PREFIX = "FRAUDSTREAM_"
CONFIG_FILE = "fraudstream.toml"
SECRET_FIELDS = frozenset(
    {
        "api_key",
        "valkey_url",
        "model_registry_key",
        "database_url",
        "alerts_webhook_secret",
        "alerts_smtp_password",
        "challenge_secret",
    }
)


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every tunable of fraudstream, typed, with the default a laptop should use."""

    data_dir: str = ".fraudstream"
    """Where the embedded Valkey keeps its data, password and pid/port files."""
    valkey_url: str = ""
    """``redis://…`` of an external Redis >= 7 / Valkey >= 7.2, or ``redis+cluster://:pw@host:port,
    host:port,…`` of a Valkey Cluster; empty = embedded server."""
    valkey_host: str = "127.0.0.1"
    """Interface the embedded server binds to (loopback unless you mean otherwise)."""
    valkey_port: int = 0
    """Port of the embedded server; 0 = pick a free one at first start and keep it."""
    valkey_appendfsync: Literal["always", "everysec", "no"] = "everysec"
    database_url: str = ""
    """SQLAlchemy URL of the system of record (``postgresql+psycopg://…``); empty = the
    SQLite file ``data_dir/fraudstream.db`` (WAL)."""
    sink_batch_size: int = 1000
    """Decisions per database transaction of `fraudstream sink`."""
    sink_linger_ms: int = 200
    """How long `fraudstream sink`, keeping up, lets decisions gather before it reads and
    stores them: fewer, larger database transactions for a store up to this much later."""
    sink_nice: int = 10
    """The niceness `fraudstream sink` lowers itself to (`fraudstream.priority`): on a host
    shared with the workers, transactions waiting for their decision get the CPU before the
    record of decided ones. 0: level with them."""
    stream_prefix: str = "tx"
    """Streams are ``{prefix}.in.{p}``, ``{prefix}.decisions``, ``{prefix}.deadletter``."""
    partitions: int = 16
    """Input partitions; one customer always lands on the same one. Bounds parallelism."""
    batch_size: int = 500
    block_ms: int = 500
    claim_idle_ms: int = 30_000
    """Pending entries idle this long belong to a dead consumer and are claimed."""
    lease_ttl_ms: int = 10_000
    """A worker that does not renew its partition leases for this long loses them."""
    lanes: int = 2
    """Most batches a worker process keeps in flight, each on its own share of the process's
    partitions with its own scorer (a thread each): one computes while another waits on
    Valkey. The lanes beyond the first open only while a backlog lasts: 2 drained a backlog
    of realistic traffic 15–38 % faster on a 2-core host, and at a steady 2,000 tx/s (one
    lane open) the p99 is 1's (docs/operations.md; ``benchmarks/bench_pipeline.py
    --lanes 1,2``). 1: never more than one batch."""
    decisions_maxlen: int = 1_000_000
    """Approximate cap on the decisions stream (the SQL sink is the system of record)."""
    features_enabled: bool = True
    """Compute online features in the scorer (off: the amount policy alone)."""
    models_enabled: bool = True
    """Score with the active model of the registry (the amount policy until one is active)."""
    model_registry_key: str = ""
    """HMAC key signing model artifacts (at least 16 bytes); empty = ``data_dir/registry.key``,
    created by the command storing the first model (`train`). Every host that scores or
    manages models needs the same key: without it, workers and `serve` refuse to start."""
    rules_enabled: bool = True
    """Evaluate the active rule set (the shipped defaults until one is published)."""
    feature_namespace: str = "fs"
    """Prefix of the online feature state keys."""
    feature_lateness_s: int = 3600
    """Events older than the customer's latest minus this are scored but not stored."""
    feature_max_future_skew_s: float = 300.0
    """A transaction dated further ahead of the wall clock than this is rejected."""
    feature_ttl_s: int = 7_776_000
    """Idle feature state expires after this (90 days)."""
    max_amount: float = 1e9
    """Larger amounts are refused (API 422, stream dead letter): a unit or encoding error, not
    a payment. At most ``schema.AMOUNT_CEILING`` (1e12)."""
    review_amount: float = 220.0
    block_amount: float = 5_000.0
    review_score: int = 500
    block_score: int = 800
    step_up_score: int = 0
    """Scores from this up to the review threshold ask the buyer for a one-time code
    (outcome ``step_up``); 0 = only rules ask for one."""
    challenge_ttl_s: int = 300
    """A step-up code not entered within this long expires: the payment is blocked."""
    challenge_attempts: int = 3
    """Wrong codes allowed for one challenge; the last one blocks the payment."""
    challenge_secret: str = ""
    """HMAC key the one-time codes are derived from (at least 16 bytes); empty = one
    generated once into ``data_dir/challenge.key``. The API and the alerts need the same."""
    api_host: str = "127.0.0.1"
    """Interface `fraudstream serve` listens on (loopback unless you mean otherwise)."""
    api_port: int = 8000
    api_key: str = ""
    api_max_body_bytes: int = 4_194_304
    """Larger request bodies are refused with 413 before they are read. 4 MiB holds the
    largest valid request (1,000 transactions with every field at its maximum length)."""
    decision_ttl_s: int = 604_800
    """How long a decision is kept by transaction id: a retried request within this time
    gets the same decision back and changes no feature (7 days)."""
    api_valkey_timeout_s: float = 5.0
    """A Valkey command of the API unanswered for this long fails its request with 503
    (a frozen Valkey must not hang requests, nor ``/healthz``)."""
    api_pin_core: bool = True
    """`fraudstream serve` in one process keeps its threads on one core (`fraudstream.cores`:
    its event loop and its deciding thread hand requests over in place)."""
    """Key of the HTTP API; empty = one generated once into ``data_dir/api.key``."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    alerts_file: str = ""
    """TOML routes of `fraudstream alerts` (``[[route]]`` tables); empty = one route: every
    block to every configured channel."""
    alerts_webhook_url: str = ""
    """``http(s)://`` receiver of the alert webhook; empty = no webhook channel."""
    alerts_webhook_secret: str = ""
    """HMAC-SHA256 key signing each webhook body (required with a webhook; never logged)."""
    alerts_webhook_timeout_s: float = 5.0
    alerts_smtp_host: str = ""
    """SMTP server of the alert e-mails; empty = no e-mail channel."""
    alerts_smtp_port: int = 0
    """0 = the port of ``alerts_smtp_security``: 587 (starttls), 465 (tls), 25 (plain)."""
    alerts_smtp_security: Literal["starttls", "tls", "plain"] = "starttls"
    alerts_smtp_user: str = ""
    alerts_smtp_password: str = ""
    alerts_email_from: str = "fraudstream@localhost"
    alerts_email_to: str = ""
    """Recipients of the alert e-mails, comma-separated."""
    alerts_attempts: int = 5
    """Tries per alert and channel before it is dead-lettered and logged ``failed``."""
    alerts_backoff_s: float = 0.5
    """Wait after the first failed try; doubles after each, up to ``alerts_max_backoff_s``."""
    alerts_max_backoff_s: float = 30.0
    alerts_batch_size: int = 100
    """Decisions read per batch by `fraudstream alerts run`."""
    drift_psi_alert: float = 0.25
    """Alert when the fleet's score or top-feature PSI against the model's training reference
    passes this (0.25: a significant shift; see `fraudstream.drift.psi`)."""
    drift_window: int = 10_000
    """Transactions per worker in the rolling window drift is measured on."""

    def __post_init__(self) -> None:
        _check(self.partitions >= 1, "partitions", f"must be >= 1, got {self.partitions}")
        _check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.lanes >= 1, "lanes", f"must be >= 1, got {self.lanes}")
        _check(
            self.sink_batch_size >= 1,
            "sink_batch_size",
            f"must be >= 1, got {self.sink_batch_size}",
        )
        _check(
            0 <= self.sink_linger_ms <= 10_000,
            "sink_linger_ms",
            f"must be between 0 and 10000, got {self.sink_linger_ms}",
        )
        _check(0 <= self.valkey_port <= 65535, "valkey_port", f"not a port: {self.valkey_port}")
        _check(
            0 <= self.alerts_smtp_port <= 65535,
            "alerts_smtp_port",
            f"not a port: {self.alerts_smtp_port}",
        )
        _check(
            self.alerts_attempts >= 1,
            "alerts_attempts",
            f"must be >= 1, got {self.alerts_attempts}",
        )
        _check(
            0 <= self.alerts_backoff_s <= self.alerts_max_backoff_s,
            "alerts_backoff_s",
            f"must be >= 0 and <= alerts_max_backoff_s ({self.alerts_max_backoff_s:g}),"
            f" got {self.alerts_backoff_s:g}",
        )
        _check(
            self.drift_psi_alert > 0,
            "drift_psi_alert",
            f"must be > 0, got {self.drift_psi_alert:g}",
        )
        _check(self.drift_window >= 1, "drift_window", f"must be >= 1, got {self.drift_window}")
        _check(
            0 <= self.sink_nice <= 19,
            "sink_nice",
            f"must be between 0 and 19, got {self.sink_nice}",
        )
        _check(
            self.alerts_batch_size >= 1,
            "alerts_batch_size",
            f"must be >= 1, got {self.alerts_batch_size}",
        )
        _check(
            0 < self.review_amount <= self.block_amount,
            "review_amount",
            f"must be > 0 and <= block_amount ({self.block_amount}), got {self.review_amount}",
        )
        _check(
            self.api_max_body_bytes >= 1024,
            "api_max_body_bytes",
            f"must be >= 1024, got {self.api_max_body_bytes}",
        )
        _check(
            self.decision_ttl_s >= 1, "decision_ttl_s", f"must be >= 1, got {self.decision_ttl_s}"
        )
        _check(
            self.api_valkey_timeout_s > 0,
            "api_valkey_timeout_s",
            f"must be > 0, got {self.api_valkey_timeout_s:g}",
        )
        _check(
            0 < self.max_amount <= AMOUNT_CEILING,
            "max_amount",
            f"must be > 0 and <= {AMOUNT_CEILING:g}, got {self.max_amount:g}",
        )
        _check(
            0 < self.review_score <= self.block_score <= 1000,
            "review_score",
            f"need 0 < review_score <= block_score <= 1000, got {self.review_score}"
            f" / {self.block_score}",
        )
        _check(
            0 <= self.step_up_score <= 1000,
            "step_up_score",
            f"must be between 0 (off) and 1000, got {self.step_up_score}",
        )
        _check(
            self.challenge_ttl_s >= 1,
            "challenge_ttl_s",
            f"must be >= 1, got {self.challenge_ttl_s}",
        )
        _check(
            1 <= self.challenge_attempts <= 10,
            "challenge_attempts",
            f"must be between 1 and 10, got {self.challenge_attempts}",
        )

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def on_cluster(self) -> bool:
        """``valkey_url`` names a Valkey Cluster (``redis+cluster://…``, as `fraudstream
        cluster up` prints it)."""
        return self.valkey_url.startswith("redis+cluster://")


def _check(ok: bool, key: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"{key}: {problem}")


FIELDS: tuple[str, ...] = Settings.__struct_fields__


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the four layers into one validated `Settings`.

    Args:
        config_file: a TOML file; ``None`` reads ``./fraudstream.toml`` if it exists.
        environ: the environment to read ``FRAUDSTREAM_*`` from; ``None`` = ``os.environ``.
        overrides: values from CLI flags; ``None`` values are ignored (flag not given).

    Raises:
        ConfigError: an unknown key (with a suggestion) or a value of the wrong type.
    """
    env = os.environ if environ is None else environ
    if config_file is None:
        explicit = env.get(ENV_PREFIX + "CONFIG")
        config_file = Path(explicit) if explicit else Path(CONFIG_FILE)
        required = bool(explicit)
    else:
        required = True
    merged: dict[str, Any] = {}
    merged.update(_from_file(config_file, required=required))
    merged.update(_from_env(env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(merged)


def _from_file(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError("config", f"file not found: {path}")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    for key in data:
        _known(key, where=str(path))
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        if name.startswith(ENV_PREFIX + "TEST_"):
            continue  # reserved for the test-suite's own knobs
        key = name[len(ENV_PREFIX) :].lower()
        _known(key, where=name)
        out[key] = value
    return out


def _known(key: str, *, where: str) -> None:
    if key in FIELDS:
        return
    close = difflib.get_close_matches(key, FIELDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(key, f"unknown setting in {where}{hint}")


def _build(values: dict[str, Any]) -> Settings:
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if " - at `$." in message:
            problem, _, path = message.rpartition(" - at `$.")
            raise ConfigError(path.rstrip("`"), problem) from None
        key, _, problem = message.partition(": ")
        raise ConfigError(key if problem else "settings", problem or message) from None


def mask_url(url: str) -> str:
    """Hide the password of a ``redis://user:pass@host`` URL."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def public_view(settings: Settings) -> dict[str, Any]:
    """The effective settings with secrets masked, for `fraudstream config show`."""
    out: dict[str, Any] = msgspec.structs.asdict(settings)
    for key in SECRET_FIELDS - {"valkey_url", "database_url"}:
        if out[key]:
            out[key] = "****"
    out["valkey_url"] = mask_url(out["valkey_url"])
    out["database_url"] = mask_url(out["database_url"])
    return out


def to_environ(settings: Settings) -> dict[str, str]:
    """The settings as ``FRAUDSTREAM_*`` variables, so a child process (a worker started by
    the demo) sees exactly the parent's effective configuration."""
    out: dict[str, str] = {}
    for key, value in msgspec.structs.asdict(settings).items():
        out[ENV_PREFIX + key.upper()] = str(value)
    return out
