"""Alerts on decisions: `alerts run` (the consumer) and `alerts test` (one sample alert)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, settings_from
from fraudstream.cli.store import DatabaseOpt
from fraudstream.gcpolicy import freeze_startup

if TYPE_CHECKING:
    from fraudstream.alerts.channels import Channel
    from fraudstream.alerts.consumer import AlertStats
    from fraudstream.alerts.routing import ChannelName
    from fraudstream.config import Settings

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts on decisions: webhook and e-mail.")
app.add_typer(alerts_app, name="alerts")

AlertsFileOpt = Annotated[
    str | None,
    typer.Option(
        "--routes",
        help="TOML routing file (default: every block to every configured channel).",
        envvar="FRAUDSTREAM_ALERTS_FILE",
        show_envvar=True,
        show_default=False,
    ),
]


@alerts_app.command("run")
def alerts_run(
    burst: Annotated[bool, typer.Option(help="Stop once every decision is handled.")] = False,
    progress_s: Annotated[float, typer.Option(help="Seconds between progress lines.")] = 5.0,
    routes_file: AlertsFileOpt = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Send an alert for every decision a route matches (own consumer group on the
    decisions stream, never in the scoring path). Prints sent, failed and the lag every few
    seconds; stops on SIGTERM / Ctrl-C after the batch in hand."""
    from fraudstream import metrics
    from fraudstream.alerts.channels import CONFIGURE_HINT, channels_from, routes_from
    from fraudstream.alerts.consumer import AlertConsumer, AlertOptions
    from fraudstream.alerts.retry import RetryPolicy
    from fraudstream.challenges import Codes
    from fraudstream.errors import ConfigError
    from fraudstream.store.engine import create_engine, database_url, describe
    from fraudstream.stream.keys import StreamKeys

    settings = settings_from(config, database_url=database, alerts_file=routes_file)
    metrics.setup(settings.data_dir)
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    channels = channels_from(settings)
    if not channels:
        raise ConfigError("alerts", f"no channel is configured ({CONFIGURE_HINT})")
    routes = routes_from(settings, set(channels))
    engine = create_engine(database_url(settings))
    keys = StreamKeys.of(settings)
    where = ", ".join(f"{name} {c.describe()}" for name, c in channels.items())
    print(
        f"alerts: {keys.decisions} ({routes.source}, {len(routes.routes)} routes) -> {where};"
        f" log in {describe(engine)}",
        file=sys.stderr,
        flush=True,
    )
    consumer = AlertConsumer(
        connect(settings),
        engine,
        keys,
        routes,
        channels,
        policy=RetryPolicy.of(settings),
        options=AlertOptions(
            batch_size=settings.alerts_batch_size,
            block_ms=settings.block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            progress_s=progress_s,
        ),
        on_progress=_WithDrift(_ProgressLine(), settings),
        codes=Codes.from_settings(settings),
    )
    freeze_startup()
    stats = consumer.run(burst=burst)
    if as_json:
        lag = stats.lag
        figures = {
            "decisions": stats.decisions,
            "alerted": stats.alerted,
            "sent": stats.sent,
            "failed": stats.failed,
            "skipped": stats.skipped,
            "dead_lettered": stats.dead_lettered,
            "lag": None if lag is None else lag.entries,
        }
        print(json.dumps(figures))


class _ProgressLine:
    """One plain line on stderr per tick; the metrics move by what changed since the last."""

    def __init__(self) -> None:
        self.sent = self.failed = 0

    def __call__(self, stats: AlertStats, elapsed_s: float) -> None:
        from fraudstream import metrics

        lag = stats.lag
        behind = "?" if lag is None or lag.entries is None else f"{lag.entries:,}"
        line = f"alerts: sent {stats.sent:,}, failed {stats.failed:,}, lag {behind} decisions"
        if stats.skipped:
            line += f", {stats.skipped:,} already sent"
        if stats.outages:
            line += f", outages {stats.outages:,}"
        print(line, file=sys.stderr, flush=True)
        entries = lag.entries if lag is not None and lag.entries is not None else 0
        metrics.alerts_progress(stats.sent - self.sent, stats.failed - self.failed, entries)
        self.sent, self.failed = stats.sent, stats.failed


DRIFT_CHECK_S = 30.0


class _WithDrift:
    """The progress line, and every `DRIFT_CHECK_S` a drift check (`fraudstream drift
    check`): a drift alert goes out on the same channels, at most once per episode."""

    def __init__(self, line: _ProgressLine, settings: Settings) -> None:
        from fraudstream.cli.drift import watch_from
        from fraudstream.drift.alert import every

        self.line = line
        self.check = every(DRIFT_CHECK_S, watch_from(settings).check)

    def __call__(self, stats: AlertStats, elapsed_s: float) -> None:
        self.line(stats, elapsed_s)
        self.check()


@alerts_app.command("test")
def alerts_test(
    channel: Annotated[
        Literal["webhook", "email"], typer.Option(help="The channel to send a sample alert on.")
    ],
    attempts: Annotated[int, typer.Option(help="Tries before giving up.", min=1)] = 1,
    config: ConfigOpt = None,
) -> None:
    """Send one sample alert (a made-up block, ids ``test-…``) and say in one line what
    happened; exit status 1 if it did not go out. Nothing is logged in the store."""
    from datetime import UTC, datetime

    from fraudstream.alerts.payload import sample_alert
    from fraudstream.alerts.retry import RetryPolicy, with_retries

    settings = settings_from(config)
    target = _channel(settings, channel)
    alert = sample_alert(channel, datetime.now(UTC))
    policy = RetryPolicy.of(settings, attempts=attempts)
    started = time.perf_counter()
    tried = with_retries(lambda: target.send(alert), policy)
    target.close()
    ms = (time.perf_counter() - started) * 1000
    tries = f"{tried.attempts} attempt{'s' if tried.attempts > 1 else ''}"
    if tried.error is None:
        print(f"{channel}: sample alert {alert.alert_id} sent to {target.describe()} "
              f"({tries}, {ms:.0f} ms)")  # fmt: skip
        return
    print(f"{channel}: sample alert NOT sent ({tries}): {tried.error}", file=sys.stderr)
    raise typer.Exit(1)


def _channel(settings: Settings, name: ChannelName) -> Channel:
    from fraudstream.alerts.channels import channels_from

    found = channels_from(settings).get(name)
    if found is None:
        needs = "alerts_webhook_url" if name == "webhook" else "alerts_smtp_host"
        raise typer.BadParameter(f"{name} is not configured (set {needs})", param_hint="--channel")
    return found
