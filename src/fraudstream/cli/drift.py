"""Drift: `drift check` (the fleet's PSI now, alerting once per episode) and `drift report`
(per-week precision and recall against the labels in the store)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, console, settings_from

if TYPE_CHECKING:
    from fraudstream.config import Settings
    from fraudstream.drift.alert import Checked, DriftWatch
    from fraudstream.drift.report import Week

drift_app = typer.Typer(
    no_args_is_help=True, help="Live traffic against the model's training reference."
)
app.add_typer(drift_app, name="drift")

COLOURS = {"stable": "green", "moderate": "yellow", "significant": "red"}


def watch_from(settings: Settings) -> DriftWatch:
    """The drift watch over the configured alert channels (none configured: it measures and
    sends nothing)."""
    from fraudstream.alerts.channels import channels_from
    from fraudstream.alerts.retry import RetryPolicy
    from fraudstream.drift.alert import DriftWatch

    return DriftWatch(
        connect(settings),
        settings.stream_prefix,
        channels_from(settings),
        RetryPolicy.of(settings),
        threshold=settings.drift_psi_alert,
    )


@drift_app.command("check")
def drift_check(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """The PSI of the live workers' windows (summed) against the model's training reference;
    above ``drift_psi_alert`` an alert goes to every configured channel, once per episode
    (`fraudstream alerts run` checks every 30 s too). Exit status 1 when a figure is over
    the threshold."""
    settings = settings_from(config)
    watch = watch_from(settings)
    found = watch.check()
    if as_json:
        print(json.dumps([_checked_dict(c) for c in found]))
    elif not found:
        console.print("no drift figures: no live worker scores with a model that has a reference")
    for checked in found if not as_json else []:
        console.print(_figures_table(checked, settings.drift_psi_alert))
        if checked.sent:
            console.print(f"alert sent on {', '.join(checked.sent)}")
        for error in checked.errors:
            console.print(f"[red]alert not sent:[/] {error}", highlight=False)
    if any(c.over for c in found):
        raise typer.Exit(1)


def _checked_dict(checked: Checked) -> dict[str, object]:
    import msgspec

    return {
        **msgspec.to_builtins(checked.figures),
        "over": checked.over,
        "sent": checked.sent,
        "errors": checked.errors,
    }


def _figures_table(checked: Checked, threshold: float) -> Table:
    f = checked.figures
    table = Table("distribution", "PSI", "reading",
                  title=f"model {f.model_version}: {f.rows:,} transactions, alert over "
                        f"{threshold:g}")  # fmt: skip
    for figure in (f.score, *f.features):
        value = "-" if figure.psi is None else f"{figure.psi:.3f}"
        reading = figure.level or "too few rows"
        table.add_row(figure.name, value, f"[{COLOURS.get(reading, 'dim')}]{reading}[/]")
    return table


@drift_app.command("report")
def drift_report(
    database: Annotated[
        str,
        typer.Option(
            help="The store: its URL, or 'default' (database_url; else the SQLite file in the "
            "data dir).",
            envvar="FRAUDSTREAM_DATABASE_URL",
            show_envvar=True,
        ),
    ] = "default",
    model: Annotated[
        str | None,
        typer.Option(
            help="Model version, or 'all' (default: the active model).", show_default=False
        ),
    ] = None,
    label_delay_days: Annotated[
        int, typer.Option(help="Days labels take to arrive: younger weeks are incomplete.", min=0)
    ] = 7,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Per-week precision and recall of a model's flagged decisions (step-up, review,
    block) against the labels in the store (chargebacks, analysts' verdicts)."""
    from fraudstream.drift.report import weekly
    from fraudstream.store.engine import create_engine, database_url

    settings = settings_from(config)
    version = _model(settings, model)
    url = database_url(settings) if database == "default" else database
    engine = create_engine(url)
    try:
        weeks = weekly(engine, version, label_delay_days=label_delay_days)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps({"model_version": version, "weeks": [w.as_dict() for w in weeks]}))
        return
    console.print(_weeks_table(weeks, version or "every model"))


def _model(settings: Settings, model: str | None) -> str | None:
    if model == "all":
        return None
    if model:
        return model
    from fraudstream.models import KeySource, ModelRegistry

    source = KeySource(settings.model_registry_key, settings.data_path)
    active = ModelRegistry(connect(settings), source).active_version()
    if active is None:
        raise typer.BadParameter("no model is active: name a version, or 'all'",
                                 param_hint="--model")  # fmt: skip
    return active


def _weeks_table(weeks: list[Week], title: str) -> Table:
    table = Table("week", "decisions", "flagged", "frauds", "caught", "precision", "recall",
                  "labels", title=f"flagged decisions of {title} against the labels")  # fmt: skip
    for w in weeks:
        table.add_row(
            w.week.isoformat(),
            f"{w.decisions:,}",
            f"{w.flagged:,}",
            f"{w.frauds:,}",
            f"{w.caught:,}",
            "-" if w.precision is None else f"{w.precision:.1%}",
            "-" if w.recall is None else f"{w.recall:.1%}",
            "complete" if w.complete else "[yellow]still arriving[/]",
        )
    return table
