"""Models: train, evaluate, and manage versions in the registry."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import date
from functools import partial
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
from fraudstream.cli.progress import Status
from fraudstream.cli.reading import (
    ColumnOpt,
    ColumnsFileOpt,
    DateFormatOpt,
    SkipInvalidOpt,
    SourceDatabaseOpt,
    load_history,
    read_options,
)

if TYPE_CHECKING:
    import polars as pl

    from fraudstream.config import Settings
    from fraudstream.models import ModelRegistry, TrainOptions

models_app = typer.Typer(no_args_is_help=True, help="Model versions: list, activate, shadow.")
app.add_typer(models_app, name="models")

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="History: CSV, Parquet or JSON lines in our columns, the Handbook's "
        "(TX_FRAUD gives the labels), a known public dataset's (Sparkov, PaySim, IEEE-CIS) "
        "or mapped with --column, or a `simulate` output folder (or --database).",
        exists=True,
    ),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Labels file (default: labels.parquet or .csv beside the data; else TX_FRAUD / "
        "is_fraud known --label-delay-days after the transaction)."
    ),
]
TrainEndOpt = Annotated[
    str | None,
    typer.Option(
        help="Last training day, YYYY-MM-DD (default: 2018-07-31 on "
        "Handbook dates, else from the data's end)."
    ),
]
TrainDaysOpt = Annotated[
    int | None,
    typer.Option(
        help="Training window in days (7 = the Handbook). Default: 56, or as many as the data "
        "holds before the delay (at least 7).",
        min=1,
        show_default=False,
    ),
]
ProfilesOpt = Annotated[
    Path | None,
    typer.Option(
        help="Customer profiles (e.g. customers.parquet) for the static features; load the "
        "same ones online ('features load-profiles') before serving the model.",
        exists=True,
        dir_okay=False,
    ),
]
DelayOpt = Annotated[int, typer.Option(help="Delay period dropped between train and test.", min=0)]
TestDaysOpt = Annotated[int, typer.Option(help="Test period in days.", min=1)]


def _registry(settings: Settings) -> ModelRegistry:
    """The registry under this host's key; refuses (naming the setting and the key file) when
    versions are stored and the host has no key."""
    from fraudstream.models.registry import host_registry

    registry = host_registry(settings, connect(settings))
    registry.check_key()
    return registry


def key_created(path: Path) -> str:
    """What the command storing the first model says, once, when it creates the key file."""
    return (
        f"created the model registry key {path}: workers and `serve` on other hosts need it "
        "(copy the file, or set model_registry_key to the same key everywhere)"
    )


def _options(
    train_end: str | None, train_days: int | None, delay_days: int, test_days: int
) -> TrainOptions:
    from fraudstream.models import TrainOptions

    end = None
    if train_end is not None:
        try:
            end = date.fromisoformat(train_end)
        except ValueError:
            raise typer.BadParameter(
                f"not a date: {train_end!r}", param_hint="--train-end"
            ) from None
    if train_days is None:
        return TrainOptions(
            train_end=end, delay_days=delay_days, test_days=test_days, fit_train_days=True
        )
    return TrainOptions(
        train_end=end, train_days=train_days, delay_days=delay_days, test_days=test_days
    )


def _profiles(path: Path | None) -> pl.DataFrame | None:
    from fraudstream.history import read_table

    return None if path is None else read_table(path)


@app.command()
def train(
    data: DataOpt = None,
    database: SourceDatabaseOpt = None,
    labels: LabelsOpt = None,
    train_end: TrainEndOpt = None,
    train_days: TrainDaysOpt = None,
    delay_days: DelayOpt = 7,
    test_days: TestDaysOpt = 7,
    activate: Annotated[bool, typer.Option(help="Make the new version active.")] = True,
    profiles: ProfilesOpt = None,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train the gradient-boosted model and the anomaly detector under the delay protocol,
    store the version in the registry, and print its test-period figures."""
    from fraudstream.models import evaluate, summary_table
    from fraudstream.models import train as fit_model

    settings = settings_from(config)
    registry = _registry(settings)
    options = _options(train_end, train_days, delay_days, test_days)
    history, label_frame = load_history(
        data, database, labels, read_options(columns, column, date_format, skip_invalid), config
    )
    profile_frame = _profiles(profiles)
    if created := registry.create_key():
        err_console.print(key_created(created), highlight=False, soft_wrap=True)
    if as_json:
        trained = fit_model(history, label_frame, options, profiles=profile_frame)
    else:
        with Status("training") as status:
            trained = fit_model(
                history, label_frame, options, status.update, profiles=profile_frame
            )
    version = registry.save(trained, activate=activate)
    metrics = evaluate(trained, None, None, options)
    until = trained.protocol.train_start.isoformat()
    reads = "terminal_covisit_share" in trained.bundle.feature_names
    needs = {"neighbours_until": until} if reads else {}
    if as_json:
        print(json.dumps({"version": version, "active": activate, **needs, **metrics}, default=str))
        return
    console.print(summary_table(metrics, title=f"model {version} on its test period"))
    console.print(
        f"{trained.protocol}, after a {options.delay_days}-day label delay", highlight=False
    )
    console.print(f"stored model {version}" + (" (active)" if activate else ""))
    if needs:
        source = str(data) if data is not None else "H"
        console.print(
            "its terminal_covisit_share reads the neighbourhood it was trained with: load it "
            f"for the workers with 'fraudstream features load-neighbours --history {source} "
            f"--until {until}'",
            highlight=False,
            soft_wrap=True,
        )


@app.command("evaluate")
def evaluate_command(
    data: DataOpt = None,
    database: SourceDatabaseOpt = None,
    labels: LabelsOpt = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: active).")] = None,
    train_end: TrainEndOpt = None,
    train_days: TrainDaysOpt = None,
    delay_days: DelayOpt = 7,
    test_days: TestDaysOpt = 7,
    report: Annotated[
        Path | None,
        typer.Option(help="Folder for the Markdown + PNG report (default: reports/<version>)."),
    ] = None,
    profiles: ProfilesOpt = None,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Evaluate a stored model on a labelled history: AUC, AP, Card Precision@100, …"""
    from fraudstream.models import evaluate_detailed, summary_table, write_report

    settings = settings_from(config)
    registry = _registry(settings)
    chosen = version or registry.active_version()
    if chosen is None:
        raise typer.BadParameter("no active model: train one or name it", param_hint="--version")
    bundle = registry.load(chosen)
    history, label_frame = load_history(
        data, database, labels, read_options(columns, column, date_format, skip_invalid), config
    )
    options = _options(train_end, train_days, delay_days, test_days)
    evaluation = evaluate_detailed(
        bundle, history, label_frame, options, profiles=_profiles(profiles)
    )
    out = write_report(evaluation, bundle, report or Path("reports") / chosen)
    if as_json:
        print(json.dumps({**evaluation.metrics, "report": str(out)}, default=str))
        return
    console.print(summary_table(evaluation.metrics, title=f"model {chosen}"))
    console.print(f"report: {out}")


@models_app.command("list")
def models_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Stored versions, newest first, with their test figures."""
    versions = _registry(settings_from(config)).versions()
    if as_json:
        print(json.dumps([v.__dict__ for v in versions], default=str))
        return
    table = Table("version", "created", "role", "holdout AUC", "holdout AP", "threshold")
    for v in versions:
        role = "active" if v.active else "shadow" if v.shadow else ""
        if not v.verified:
            role = ", ".join(filter(None, [role, "metadata fails its signature check"]))
        m: dict[str, Any] = (v.metrics or {}).get("holdout", {})  # what training stores
        table.add_row(
            v.version,
            v.created_at[:19],
            role,
            *(f"{m[k]:.3f}" if k in m else "" for k in ("auc_roc", "average_precision")),
            f"{v.threshold:.0f}" if v.verified else "",
        )
    console.print(table)


@models_app.command("show")
def models_show(version: str, config: ConfigOpt = None) -> None:
    """A version's metadata (features, training window, data hash, metrics, thresholds)."""
    print(json.dumps(_registry(settings_from(config)).meta(version), indent=2, default=str))


@models_app.command("activate")
def models_activate(version: str, config: ConfigOpt = None) -> None:
    """Make a version active once it loads here (id, signature, features); running workers
    switch between batches."""
    from fraudstream.features import default_feature_set

    _registry(settings_from(config)).activate(version, default_feature_set())
    console.print(f"model {version} is active")


@models_app.command("rollback")
def models_rollback(config: ConfigOpt = None) -> None:
    """Return to the previously active version."""
    version = _registry(settings_from(config)).rollback()
    console.print(f"model {version} is active again")


@models_app.command("shadow")
def models_shadow(
    version: Annotated[str | None, typer.Argument(help="Version to shadow; omit to stop.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Score a version beside the active one on every batch, logged, never deciding (checked
    like `activate`)."""
    from fraudstream.features import default_feature_set

    _registry(settings_from(config)).shadow(version, default_feature_set())
    console.print(f"shadow model: {version}" if version else "no shadow model")


@models_app.command("delete")
def models_delete(version: str, config: ConfigOpt = None) -> None:
    """Delete a version (not the active one)."""
    _registry(settings_from(config)).delete(version)
    console.print(f"model {version} deleted")


@models_app.command("export")
def models_export(version: str, path: Path, config: ConfigOpt = None) -> None:
    """Write a version (signed artifact + metadata) to a file."""
    out = _registry(settings_from(config)).export(version, path)
    console.print(f"wrote {out}")


@models_app.command("import")
def models_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], config: ConfigOpt = None
) -> None:
    """Load a version exported by a registry with the same key (others are refused)."""
    version = _registry(settings_from(config)).import_file(path)
    console.print(f"imported model {version}")


@models_app.command("compare")
def models_compare(
    a: str,
    b: str,
    data: DataOpt = None,
    database: SourceDatabaseOpt = None,
    labels: LabelsOpt = None,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Two versions on the same labelled test period: agreement and metric deltas (b − a)."""
    from fraudstream.models import compare

    registry = _registry(settings_from(config))
    history, label_frame = load_history(
        data, database, labels, read_options(columns, column, date_format, skip_invalid), config
    )
    result = compare(registry.load(a), registry.load(b), history, label_frame)
    if as_json:
        print(json.dumps(result, default=str))
        return
    _comparison_table(result, f"{a} vs {b}")


def _comparison_table(result: dict[str, Any], title: str) -> None:
    table = Table("figure", "value", title=title)
    for key, value in result.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    err_console.print("deltas are b − a")


JobOpt = Annotated[
    str | None,
    typer.Option(
        "--job",
        hidden=True,
        help="Record this run's state under the API's retrain job ID (POST /v1/models/retrain "
        "starts the command so), at a lower CPU priority than the server.",
    ),
]


@app.command()
def retrain(
    database: Annotated[
        str,
        typer.Option(
            help="The store to learn from: its URL, or 'default' (database_url; else the "
            "SQLite file in the data dir)."
        ),
    ] = "default",
    train_end: TrainEndOpt = None,
    train_days: TrainDaysOpt = None,
    delay_days: DelayOpt = 7,
    test_days: TestDaysOpt = 7,
    as_json: JsonOpt = False,
    job: JobOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train on what production decided and what analysts and chargebacks said (the store's
    transactions and labels), register the new version as the shadow, and compare it with
    the active one on the latest labelled weeks. `fraudstream models promote` makes it
    active."""
    settings = settings_from(config)
    run = partial(_retrain, settings, database, train_end, train_days, delay_days, test_days)
    if job is None:
        result = run(as_json, config)
    else:
        result = _as_job(settings, job, partial(run, True, config))
    if as_json:
        print(json.dumps(result, default=str))
        return
    version, active = result["version"], result["active"]
    if not result["shadow"]:
        console.print(f"retrained model is the active one ({version}): nothing to shadow")
        return
    if "comparison" in result:
        _comparison_table(result["comparison"], f"active {active} (a) vs new {version} (b)")
    console.print(
        f"model {version} is the shadow (scored beside {active or 'the amount policy'}, never "
        "deciding); `fraudstream models promote` makes it active",
        highlight=False,
    )


def _retrain(
    settings: Settings,
    database: str,
    train_end: str | None,
    train_days: int | None,
    delay_days: int,
    test_days: int,
    quiet: bool,
    config: Path | None,
) -> dict[str, Any]:
    """Train on the store, register the version as the shadow unless it is the active one,
    and compare it with the active one: what `retrain --json` prints."""
    from fraudstream.features import default_feature_set
    from fraudstream.models import compare
    from fraudstream.models import train as fit_model

    registry = _registry(settings)
    options = _options(train_end, train_days, delay_days, test_days)
    history, label_frame = load_history(None, database, None, config=config)
    if created := registry.create_key():
        err_console.print(key_created(created), highlight=False, soft_wrap=True)
    with Status("retraining on the store") as status:
        trained = fit_model(history, label_frame, options, None if quiet else status.update)
    version = registry.save(trained, activate=False)
    active = registry.active_version()
    if version == active:  # the same artifact: nothing new was learnt
        return {"version": version, "shadow": False, "active": active}
    registry.shadow(version, default_feature_set())
    result: dict[str, Any] = {"version": version, "shadow": True, "active": active}
    if active is not None:
        comparison = compare(
            registry.load(active),
            trained.bundle,
            None,
            None,
            options,
            dataset=trained.dataset,
            protocol=trained.protocol,
        )
        result["comparison"] = json.loads(json.dumps(comparison, default=str))
    return result


def _as_job(settings: Settings, job_id: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run the retrain as the API's job ``job_id``: recorded running, its slot renewed while
    it trains, then its outcome (the error in one line, the exception raised on as usual)."""
    from fraudstream.models.jobs import RetrainJobs, one_line

    jobs = RetrainJobs(connect(settings))
    job = jobs.start(job_id, os.getpid())
    os.nice(10)  # the server's processes score on the same host: they come first
    with jobs.beating(job_id):
        try:
            result = run()
        except BaseException as exc:
            jobs.finish(job, "failed", {"error": one_line(exc)})
            raise
    jobs.finish(job, "succeeded", result)
    return result


@models_app.command("promote")
def models_promote(
    version: Annotated[
        str | None, typer.Argument(help="Version to make active (default: the shadow).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Make the shadow version (or the one named) active, and stop shadowing it."""
    from fraudstream.features import default_feature_set

    chosen = _registry(settings_from(config)).promote(version, default_feature_set())
    console.print(f"model {chosen} is active")
