"""Running the pipeline: demo, worker, produce."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import (
    ConfigOpt,
    JsonOpt,
    connect,
    console,
    err_console,
    settings_from,
)
from fraudstream.cli.progress import Status, Steps
from fraudstream.cli.reading import ColumnOpt, ColumnsFileOpt, DateFormatOpt, SkipInvalidOpt
from fraudstream.gcpolicy import freeze_startup

if TYPE_CHECKING:
    from fraudstream.config import Settings
    from fraudstream.features.context import EngineStats
    from fraudstream.models import ModelHealth
    from fraudstream.scoring import Scorer


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Seconds of traffic to produce.", min=1)] = 20,
    tps: Annotated[float, typer.Option(help="Target transactions per second.", min=1)] = 2000,
    workers: Annotated[int, typer.Option(help="Worker processes to run.", min=1)] = 2,
    bad_ratio: Annotated[
        float, typer.Option(help="Share of malformed messages to inject.", min=0, max=1)
    ] = 0.001,
    seed: Annotated[int, typer.Option(help="Random seed of the generated traffic.")] = 7,
    train: Annotated[
        bool, typer.Option(help="Train and activate a model first if none is active.")
    ] = True,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Run the whole pipeline on the embedded server and print a summary."""
    from fraudstream.demo import DemoRun

    settings = settings_from(config)
    client = connect(settings)
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
        if train:
            run.ensure_model()
            _say_key_created(run.key_created)
        run.warm_up()
        freeze_startup()  # the generator's pauses would be the run's latency
        report = run.run()
        print(json.dumps(report.as_dict()))
        return
    if train:
        with Status("model: checking the registry") as status:
            version = run.ensure_model(lambda msg: status.update(f"model: {msg}"))
        _say_key_created(run.key_created)
        trained = run.report.model_metrics
        console.print(
            f"model {version} "
            + (
                "trained on a simulated history and activated: test week AUC "
                f"{trained['auc_roc']:.3f}, AP {trained['average_precision']:.3f}, CP@100 "
                f"{trained['card_precision_at_100']:.3f}"
                if trained
                else "(already active)"
            )
        )
    with Status("compiling the feature kernels (the first run on this machine only)"):
        run.warm_up()
    console.print(
        f"[bold]fraudstream demo[/] run {run.report.run_id}: {tps:g} tx/s for "
        f"{duration:g}s, {workers} worker(s), {settings.partitions} partitions"
    )
    if backlog := run.backlog():
        console.print(
            f"[yellow]note:[/] {backlog:,} transactions already wait in the input "
            "streams; the workers score them first, and the latency shows it"
        )
    freeze_startup()
    with Steps("decisions", int(tps * duration)) as step:
        report = run.run(on_progress=lambda done, total: step.update(done))
        step.update(report.decided + report.dead_letters)
    console.print(_demo_table(report.as_dict()))
    console.print(f"sink and alerts logs: {report.logs}", highlight=False)
    console.print(_console_hint(settings), highlight=False, soft_wrap=True)


def _console_hint(settings: Settings) -> str:
    """How to look at what the demo left in the store and the streams, and to watch the
    console move (the demo's own traffic has ended by then). One line, never wrapped, so the
    commands copy as they are."""
    url = f"http://{settings.api_host}:{settings.api_port}/"
    key_file = settings.data_path / "api.key"
    key = "your FRAUDSTREAM_API_KEY" if settings.api_key else f"the key in {key_file}"
    return (
        f"live console: run `.venv/bin/fraudstream serve`, open {url} and sign in with {key}"
        " (metrics: /metrics, API docs: /docs); to watch it move, send traffic from another"
        " terminal: `.venv/bin/fraudstream loadtest --tps 200 --duration 300`"
    )


def _say_key_created(path: Path | None) -> None:
    if path is not None:
        from fraudstream.cli.models import key_created

        err_console.print(key_created(path), highlight=False, soft_wrap=True)


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
        (
            "frauds flagged (step-up/review/block)",
            f"{summary['frauds_flagged']:,} of {summary['frauds_sent']:,}; "
            f"{summary['flagged']:,} flagged in all",
        ),
        ("workers", str(summary["workers"])),
        ("model", summary["model_version"]),
        ("elapsed", f"{summary['elapsed_s']:.1f} s"),
        ("throughput", f"{summary['throughput_tps']:,.0f} tx/s (target {summary['target_tps']:g})"),
        ("latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"),
        ("latency max", f"{lat['max']:.1f} ms"),
        ("stored (sink)", f"{summary['stored']:,} decisions in {summary['store']}"),
        (
            "alerts (webhook: blocks, step-up codes)",
            f"{summary['alerts']['received']:,} received, {summary['alerts']['verified']:,} "
            f"signatures verified; decision → receiver p50 / p95 "
            f"{summary['alerts']['latency_ms_p50']:.1f} / "
            f"{summary['alerts']['latency_ms_p95']:.1f} ms",
        ),
    ]
    total = max(summary["decisions"], 1)
    rows += [
        (f"outcome {k}", f"{v:,} ({100 * v / total:.2f} %)") for k, v in summary["outcomes"].items()
    ]
    rows += [(hit, f"{n:,}") for hit, n in list(summary["rule_hits"].items())[:6]]
    for row in rows:
        table.add_row(*row)
    return table


@app.command()
def worker(
    processes: Annotated[
        int | None,
        typer.Option(
            help="Worker processes under a supervisor (default: one per core); 1 works in "
            "this process.",
            min=1,
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between a process's figures lines.", min=0.1)
    ] = 5.0,
    report: Annotated[bool, typer.Option(hidden=True)] = False,
    batch_size: Annotated[
        int | None, typer.Option(help="Messages per read.", min=1, envvar="FRAUDSTREAM_BATCH_SIZE")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit once there is nothing left to read.")] = False,
    max_messages: Annotated[int | None, typer.Option(help="Exit after this many.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print nothing but errors.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Consume the input partitions, score, write decisions (stop with Ctrl-C / SIGTERM)."""
    from fraudstream import metrics

    settings = settings_from(config, batch_size=batch_size)
    metrics.setup(settings.data_dir)  # the children inherit the folder
    processes = processes or os.cpu_count() or 1
    if processes > 1:
        raise typer.Exit(
            _supervise(processes, interval, batch_size, burst, max_messages, quiet, config)
        )
    _work(settings, interval if report else None, burst, max_messages, quiet)


def _supervise(
    processes: int,
    interval: float,
    batch_size: int | None,
    burst: bool,
    max_messages: int | None,
    quiet: bool,
    config: Path | None,
) -> int:
    """Run ``processes`` single-process workers under a supervisor; its exit code."""
    from fraudstream.stream.supervisor import Supervisor

    command = [sys.executable, "-m", "fraudstream", "worker", "--processes", "1", "--report"]
    command += ["--interval", str(interval)]
    command += ["--batch-size", str(batch_size)] if batch_size else []
    command += ["--max-messages", str(max_messages)] if max_messages is not None else []
    command += ["--burst"] * burst + ["--quiet"] * quiet
    command += ["--config", str(config)] if config else []
    return Supervisor(command, processes, lines=not quiet).run()


def _work(
    settings: Settings,
    report_every: float | None,
    burst: bool,
    max_messages: int | None,
    quiet: bool,
) -> None:
    """One worker in this process (its figures on stdout every ``report_every`` seconds)."""
    from fraudstream.drift.monitor import DriftMonitor
    from fraudstream.metrics import Monitors, WorkerMetrics
    from fraudstream.scoring import build_scorer
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.report import IntervalReporter
    from fraudstream.stream.worker import Worker, WorkerOptions

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    options = WorkerOptions(
        batch_size=settings.batch_size,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        lease_ttl_ms=settings.lease_ttl_ms,
        decisions_maxlen=settings.decisions_maxlen,
        decision_ttl_s=settings.decision_ttl_s,
    )
    client = connect(settings)
    scorer = build_scorer(settings, client)
    lanes = [scorer] + [build_scorer(settings, client) for _ in range(settings.lanes - 1)]
    reporter = IntervalReporter(report_every) if report_every else None
    drift = DriftMonitor.attached(settings, client, lanes)
    monitor = Monitors(reporter, WorkerMetrics(), drift)
    keys = StreamKeys.of(settings)
    w = Worker(client, keys, lanes, options, monitor=monitor)
    if not quiet:
        stages = [
            name
            for name, on in (("features", scorer.features), ("rules", scorer.rules))
            if on is not None
        ]
        model = scorer.models.active if scorer.models is not None else None
        stages.append(f"model {model.version}" if model is not None else "amount policy")
        err_console.print(
            f"worker {w.consumer}: {settings.partitions} partitions, batch {settings.batch_size}"
            f", {_lanes(settings.lanes)}, stages: {', '.join(stages)}"
        )
    freeze_startup()
    stats = w.run(max_messages=max_messages, burst=burst)
    if not quiet:
        err_console.print(
            f"worker {w.consumer} stopped: {stats.processed:,} processed, "
            f"{stats.dead_lettered:,} dead letters, {stats.claimed:,} claimed, "
            f"{stats.labels:,} labels, {stats.retried_batches:,} batches retried, "
            f"{stats.dropped_batches:,} dropped (lease lost, {stats.dropped:,} entries)"
        )
        if scorer.features is not None:
            fs = _feature_stats(lanes)
            err_console.print(
                f"features: {fs.processed:,} stored, {fs.duplicates:,} duplicates, "
                f"{fs.late:,} too late to store (lateness {settings.feature_lateness_s} s), "
                f"{fs.reset:,} unreadable customer states reset, "
                f"labels {fs.labels_applied:,} applied / {fs.labels_late:,} too late"
            )
        if scorer.models is not None:
            err_console.print(_models_line(scorer.models.health()), highlight=False)


def _lanes(lanes: int) -> str:
    if lanes == 1:
        return "1 lane"
    return f"up to {lanes} lanes (beyond the first while a backlog lasts)"


def _feature_stats(scorers: list[Scorer]) -> EngineStats:
    """The lanes' feature engines' counts, summed."""
    from fraudstream.features.context import EngineStats

    total = EngineStats()
    for scorer in scorers:
        if scorer.features is not None:
            for name, value in vars(scorer.features.stats).items():
                setattr(total, name, getattr(total, name) + value)
    return total


def _models_line(health: ModelHealth) -> str:
    """The models' end-of-run line: who decided, and the failed loads counted."""
    n = health.load_failures
    deciding = f"model {health.version}" if health.version else "the amount policy"
    line = (
        f"models: {deciding} deciding, shadow {health.shadow or 'none'}, "
        f"{n:,} failed model load{'' if n == 1 else 's'}"
    )
    return line + (f" ({health.error})" if health.error else "")


@app.command()
def produce(
    path: Annotated[
        Path,
        typer.Argument(
            help="JSON lines, CSV or Parquet; our column names, the Fraud Detection Handbook's, "
            "a known public dataset's (Sparkov, PaySim, IEEE-CIS), or mapped with --column.",
            exists=True,
            dir_okay=False,
        ),
    ],
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Validate transactions from a file and send them to the input stream (nothing is sent
    if a row is bad, unless --skip-invalid)."""
    from fraudstream.cli.reading import tell_encoding, tell_layout
    from fraudstream.columns import column_map
    from fraudstream.ingest import read_transactions, write_rejects
    from fraudstream.scoring import intake_check
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.producer import Producer

    settings = settings_from(config)
    client = connect(settings)
    check = intake_check(settings, client)  # what the workers would dead-letter
    with Steps(f"validating {path.name}", None, unit="rows") as step:
        ingested = read_transactions(
            path, column_map(columns, column or [], date_format), step.update, check
        )
    if ingested.layout:
        tell_layout(path, ingested.layout)
    if ingested.encoding:
        tell_encoding(path, ingested.encoding)
    if not skip_invalid:
        ingested.stop_on_bad(path)
    rejected = ingested.rejected
    for bad in rejected[:20]:
        err_console.print(
            f"[yellow]skipped[/] {path.name}:{bad.row}: {bad.reason}", highlight=False
        )
    if rejected:
        rejects = path.with_name(f"{path.stem}.rejects.csv")
        write_rejects(rejected, rejects)
        err_console.print(
            f"skipped {len(rejected):,} invalid rows of {path.name}; they and their reasons "
            f"are in {rejects}",
            highlight=False,
            soft_wrap=True,
        )
    producer = Producer(client, StreamKeys.of(settings), batch_size=settings.batch_size)
    with Steps("sending", len(ingested.transactions), unit="transactions") as step:
        sent = producer.send(ingested.transactions, on_sent=step.update)
    console.print(f"sent {sent:,} transactions, rejected {len(rejected):,}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Server processes on the one port (uvicorn's supervisor: the parent binds "
            "the socket, each child has its own Valkey pool, scorer and micro-batcher; a "
            "child that dies is replaced, SIGTERM stops them all).",
            min=1,
        ),
    ] = 1,
    config: ConfigOpt = None,
) -> None:
    """Serve the HTTP scoring API (POST /v1/score, POST /v1/labels) with an API key.

    With --workers N > 1, N processes accept on the same socket, bound once by a supervising
    parent (uvicorn's multiprocess mode with an app factory, `fraudstream.api.serving`), not
    SO_REUSEPORT: the supervisor replaces a child that dies or hangs and stops all of them on
    SIGTERM. Each child builds its own app from the same settings. /readyz names the pid
    that answered.
    """
    import uvicorn

    from fraudstream import metrics
    from fraudstream.api import create_app
    from fraudstream.api.auth import ensure_api_key
    from fraudstream.api.serving import serve_processes, uvicorn_options
    from fraudstream.cores import pin_to_one_core

    settings = settings_from(config, api_host=host, api_port=port)
    metrics.setup(settings.data_dir)  # before the app and its children: one folder for all
    key, key_file = ensure_api_key(settings.api_key, settings.data_path)
    where = f"in {key_file}" if key_file else "from FRAUDSTREAM_API_KEY"
    if workers > 1:
        if config is not None:  # the children read the settings the way this process did
            os.environ["FRAUDSTREAM_CONFIG"] = str(config.resolve())
        err_console.print(
            f"serving on http://{settings.api_host}:{settings.api_port} with {workers} "
            f"processes (API key {where})"
        )
        raise typer.Exit(serve_processes(settings.api_host, settings.api_port, workers))
    # before the app starts any thread: they inherit the core
    core = pin_to_one_core() if settings.api_pin_core else None
    app_ = create_app(settings, connect(settings, timeout_s=settings.api_valkey_timeout_s), key)
    on = "" if core is None else f", on core {core}"
    err_console.print(
        f"serving on http://{settings.api_host}:{settings.api_port} (API key {where}{on})"
    )
    uvicorn.run(
        app_,
        host=settings.api_host,
        port=settings.api_port,
        **uvicorn_options(),
    )
