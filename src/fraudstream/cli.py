"""`fraudstream …` commands. Heavy imports live inside commands so `--help` stays instant."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fraudstream.config import Settings, load_settings, public_view
from fraudstream.errors import FraudstreamError

if TYPE_CHECKING:
    import redis

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Real-time fraud detection and transaction risk scoring.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective configuration.")
valkey_app = typer.Typer(no_args_is_help=True, help="Manage the embedded Valkey server.")
app.add_typer(config_app, name="config")
app.add_typer(valkey_app, name="valkey")

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML config file (default ./fraudstream.toml).",
        envvar="FRAUDSTREAM_CONFIG",
        show_envvar=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print figures as one JSON object.")]


def _settings(config: Path | None, **overrides: Any) -> Settings:
    return load_settings(config_file=config, overrides=overrides)


def _connect(settings: Settings) -> redis.Redis:
    from fraudstream.valkey import connect

    return connect(settings)


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of traffic to produce.", min=1)] = 20,
    tps: Annotated[float, typer.Option(help="Target transactions per second.", min=1)] = 2000,
    workers: Annotated[int, typer.Option(help="Worker processes to run.", min=1)] = 2,
    bad_ratio: Annotated[
        float, typer.Option(help="Share of malformed messages to inject.", min=0, max=1)
    ] = 0.001,
    seed: Annotated[int, typer.Option(help="Random seed of the generated traffic.")] = 7,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Run the whole pipeline on the embedded server and print a summary."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from fraudstream.demo import DemoRun

    settings = _settings(config)
    client = _connect(settings)
    run = DemoRun(
        settings,
        client,
        workers=workers,
        tps=tps,
        duration=duration,
        bad_ratio=bad_ratio,
        seed=seed,
    )
    if as_json:
        report = run.run()
        print(json.dumps(report.as_dict()))
        return
    console.print(
        f"[bold]fraudstream demo[/] run {run.report.run_id}: {tps:g} tx/s for "
        f"{duration:g}s, {workers} worker(s), {settings.partitions} partitions"
    )
    if backlog := run.backlog():
        console.print(
            f"[yellow]note:[/] {backlog:,} transactions already wait in the input "
            "streams; the workers score them first, and the latency shows it"
        )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("decisions", total=int(tps * duration))
        report = run.run(on_progress=lambda done, total: progress.update(task, completed=done))
        progress.update(task, completed=report.decided + report.dead_letters)
    console.print(_demo_table(report.as_dict()))


def _demo_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"demo run {summary['run_id']}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    lat = summary["latency_ms"]
    rows = [
        ("transactions (valid)", f"{summary['transactions']:,}"),
        ("decisions", f"{summary['decisions']:,}"),
        ("dead letters", f"{summary['dead_letters']:,} of {summary['malformed_sent']:,} sent"),
        ("frauds in the traffic", f"{summary['frauds_sent']:,}"),
        ("workers", str(summary["workers"])),
        ("elapsed", f"{summary['elapsed_s']:.1f} s"),
        ("throughput", f"{summary['throughput_tps']:,.0f} tx/s (target {summary['target_tps']:g})"),
        ("latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"),
        ("latency max", f"{lat['max']:.1f} ms"),
    ]
    total = max(summary["decisions"], 1)
    rows += [
        (f"outcome {k}", f"{v:,} ({100 * v / total:.2f} %)") for k, v in summary["outcomes"].items()
    ]
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def worker(
    batch_size: Annotated[
        int | None, typer.Option(help="Messages per read.", min=1, envvar="FRAUDSTREAM_BATCH_SIZE")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit once there is nothing left to read.")] = False,
    max_messages: Annotated[int | None, typer.Option(help="Exit after this many.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Consume the input partitions, score, write decisions (stop with Ctrl-C / SIGTERM)."""
    from fraudstream.scoring import AmountPolicy, Scorer
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.worker import Worker, WorkerOptions

    settings = _settings(config, batch_size=batch_size)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    options = WorkerOptions(
        batch_size=settings.batch_size,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        lease_ttl_ms=settings.lease_ttl_ms,
        decisions_maxlen=settings.decisions_maxlen,
    )
    w = Worker(
        _connect(settings),
        StreamKeys(settings.stream_prefix, settings.partitions),
        Scorer(AmountPolicy.from_settings(settings)),
        options,
    )
    if not quiet:
        err_console.print(
            f"worker {w.consumer}: {settings.partitions} partitions, batch {settings.batch_size}"
        )
    stats = w.run(max_messages=max_messages, burst=burst)
    if not quiet:
        err_console.print(
            f"worker {w.consumer} stopped: {stats.processed:,} processed, "
            f"{stats.dead_lettered:,} dead letters, {stats.claimed:,} claimed"
        )


@app.command()
def produce(
    path: Annotated[
        Path,
        typer.Argument(
            help="JSON lines, CSV or Parquet; our column names or the Fraud Detection Handbook's.",
            exists=True,
            dir_okay=False,
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Validate transactions from a file and send them to the input stream."""
    from fraudstream.ingest import read_transactions
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.producer import Producer

    settings = _settings(config)
    transactions, rejected = read_transactions(path)
    for where, error in rejected[:20]:
        err_console.print(f"[yellow]skipped[/] {path.name}:{where}: {error}")
    producer = Producer(
        _connect(settings),
        StreamKeys(settings.stream_prefix, settings.partitions),
        batch_size=settings.batch_size,
    )
    sent = producer.send(transactions)
    console.print(f"sent {sent:,} transactions, rejected {len(rejected):,}")
    if rejected:
        raise typer.Exit(1)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the history to.")] = Path("data"),
    profile: Annotated[
        str,
        typer.Option(
            help="handbook (the Handbook's design only) or full (plus e-commerce and modern fraud)."
        ),
    ] = "handbook",
    customers: Annotated[int, typer.Option(help="Customers.", min=1)] = 5_000,
    terminals: Annotated[int, typer.Option(help="Terminals.", min=1)] = 10_000,
    days: Annotated[int, typer.Option(help="Days of history.", min=1)] = 183,
    start_date: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = "2018-04-01",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same history).")] = 0,
    fmt: Annotated[
        list[str] | None,
        typer.Option("--format", help="parquet and/or csv (repeat the flag for both)."),
    ] = None,
    label_delay_hours: Annotated[float, typer.Option(help="Median chargeback delay.")] = 48.0,
    label_delay_cap_days: Annotated[float, typer.Option(help="Longest delay.")] = 7.0,
    without: Annotated[
        list[str] | None, typer.Option(help="Switch an extension off (full profile; repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Simulate a payment history with fraud and delayed chargeback labels."""
    from datetime import date

    from rich.progress import Progress

    from fraudstream.simulate import (
        Extensions,
        LabelDelay,
        SimulationConfig,
        summarize,
        summary_table,
        write_history,
    )
    from fraudstream.simulate import simulate as run_simulation

    try:
        first_day = date.fromisoformat(start_date)
    except ValueError:
        raise typer.BadParameter(f"not a date: {start_date!r}", param_hint="--start-date") from None
    formats = tuple(fmt or ["parquet"])
    for f in formats:
        if f not in ("parquet", "csv"):
            raise typer.BadParameter(f"{f!r} is not parquet or csv", param_hint="--format")
    config = SimulationConfig(
        n_customers=customers,
        n_terminals=terminals,
        n_days=days,
        start_date=first_day,
        seed=seed,
        profile=profile,  # type: ignore[arg-type]  # validated by SimulationConfig
        label_delay=LabelDelay(scale_hours=label_delay_hours, cap_days=label_delay_cap_days),
        extensions=Extensions().disabled(without or []),
    )
    if as_json:
        result = run_simulation(config)
    else:
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("simulating", total=days + 3)
            result = run_simulation(
                config, lambda done, total: progress.update(task, completed=done, total=total)
            )
    paths = write_history(result, out, formats)
    summary = summarize(result)
    if as_json:
        print(json.dumps({**summary, "files": [str(p) for p in paths]}, default=str))
        return
    console.print(summary_table(summary))
    console.print(f"wrote {', '.join(str(p) for p in paths)}")


@app.command()
def generate(
    tps: Annotated[float, typer.Option(help="Target tx/s; 0 = unthrottled.", min=0)] = 1000,
    duration: Annotated[float, typer.Option(help="Seconds to run.", min=0.1)] = 10,
    pattern: Annotated[str, typer.Option(help="constant, wave, spike or random.")] = "constant",
    fraud_ratio: Annotated[
        float | None, typer.Option(help="Share of fraud to send (default: the history's own).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Prefix of this run's transaction ids (default: random).")
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option(
            help="transactions.parquet (or its folder) "
            "from `fraudstream simulate`; default: a "
            "small world simulated now."
        ),
    ] = None,
    speedup: Annotated[
        float | None,
        typer.Option(
            help="Replay event time this many times faster than real time (ignores --tps).",
            min=0.000001,
        ),
    ] = None,
    labels: Annotated[
        bool, typer.Option(help="Also send the chargebacks of sent frauds to the labels stream.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for sampling and patterns.")] = 0,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Send simulated transactions into the input stream at a rate and traffic pattern."""
    import secrets

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from fraudstream import generate as gen
    from fraudstream.simulate.patterns import PATTERNS
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.producer import Producer

    if pattern not in PATTERNS:
        raise typer.BadParameter(
            f"{pattern!r} is not one of {', '.join(PATTERNS)}", param_hint="--pattern"
        )
    settings = _settings(config)
    options = gen.GenerateOptions(
        tps=tps,
        duration=duration,
        pattern=pattern,
        fraud_ratio=fraud_ratio,
        speedup=speedup,
        run_id=run_id or secrets.token_hex(4),
        labels=labels,
        seed=seed,
        batch_size=settings.batch_size,
    )
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    transactions, label_frame = gen.load_history(history, seed=seed)
    picked = gen.select(transactions, options.rows_needed(), options)
    rows = gen.encode_rows(picked, label_frame, keys, labels, settings.batch_size)
    producer = Producer(_connect(settings), keys, batch_size=settings.batch_size)
    if as_json:
        stats = gen.run(producer, rows, options)
    else:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
            TimeElapsedColumn(),
            console=err_console,
        ) as progress:
            task = progress.add_task(f"run {options.run_id}", total=duration)
            stats = gen.run(
                producer,
                rows,
                options,
                lambda sent, elapsed: progress.update(
                    task,
                    completed=min(elapsed, duration),
                    description=f"run {options.run_id}: {sent:,} sent",
                ),
            )
    summary = {
        "run_id": options.run_id,
        "pattern": pattern,
        "sent": stats.sent,
        "elapsed_s": round(stats.elapsed, 3),
        "target_tps": round(stats.target_tps, 1),
        "achieved_tps": round(stats.achieved_tps, 1),
        "expected": round(stats.expected),
        "fraud_sent": int(picked.head(stats.sent)["is_fraud"].sum()),
    }
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("run", "pattern", "sent", "frauds", "elapsed", "target tx/s", "achieved tx/s")
    table.add_row(
        options.run_id,
        pattern,
        f"{stats.sent:,}",
        f"{summary['fraud_sent']:,}",
        f"{stats.elapsed:.2f} s",
        f"{stats.target_tps:,.0f}",
        f"{stats.achieved_tps:,.0f}",
    )
    console.print(table)


@config_app.command("show")
def config_show(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Print the effective settings (defaults <- file <- environment), secrets masked."""
    view = public_view(_settings(config))
    if as_json:
        print(json.dumps(view))
        return
    table = Table("setting", "value", "environment variable")
    for key, value in view.items():
        table.add_row(key, str(value), f"FRAUDSTREAM_{key.upper()}")
    console.print(table)


@valkey_app.command("start")
def valkey_start(config: ConfigOpt = None) -> None:
    """Start the embedded server (or report the running one)."""
    from fraudstream.valkey import embedded

    settings = _settings(config)
    if settings.valkey_url:
        raise typer.BadParameter(
            "valkey_url is set: fraudstream starts no server", param_hint="FRAUDSTREAM_VALKEY_URL"
        )
    info = embedded(settings).ensure()
    console.print(
        f"valkey running on {info.host}:{info.port} (pid {info.pid}), "
        f"data in {settings.data_path / 'valkey'}"
    )


@valkey_app.command("stop")
def valkey_stop(config: ConfigOpt = None) -> None:
    """Stop the embedded server (its AOF is flushed)."""
    from fraudstream.valkey import embedded

    stopped = embedded(_settings(config)).stop()
    console.print("valkey stopped" if stopped else "valkey was not running")


@valkey_app.command("status")
def valkey_status(config: ConfigOpt = None) -> None:
    """Say whether the embedded server is running, and where."""
    from fraudstream.valkey import embedded

    info = embedded(_settings(config)).status()
    if info is None:
        console.print("valkey is not running")
        raise typer.Exit(1)
    console.print(f"valkey running on {info.host}:{info.port} (pid {info.pid})")


def main() -> None:
    """Entry point: every deliberate error is one line on stderr, exit status 2."""
    try:
        app()
    except FraudstreamError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
