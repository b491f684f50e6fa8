"""Rules and lists: validate, publish, inspect, test and backtest rule sets; manage lists."""

from __future__ import annotations

import json
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

    from fraudstream.rules import RuleSchema
    from fraudstream.rules.backtest import ModelScores

rules_app = typer.Typer(no_args_is_help=True, help="Analyst rules: validate, publish, test.")
lists_app = typer.Typer(no_args_is_help=True, help="Named allow/deny lists in Valkey.")
app.add_typer(rules_app, name="rules")
app.add_typer(lists_app, name="lists")

RulesFile = Annotated[Path, typer.Argument(help="A YAML rule set.", exists=True, dir_okay=False)]


def rule_schema() -> RuleSchema:
    """The names a rule may use: transaction fields, the live features, the model scores."""
    from fraudstream.features import default_feature_set
    from fraudstream.rules import RuleSchema

    return RuleSchema.build(default_feature_set().names)


@rules_app.command("validate")
def rules_validate(path: RulesFile) -> None:
    """Check a rule set; every problem is printed as file:line:col."""
    from fraudstream.errors import DataFileError
    from fraudstream.rules import validate_ruleset
    from fraudstream.rules.ruleset import read_text

    try:
        errors: list[Exception] = [
            *validate_ruleset(read_text(path), rule_schema(), source=str(path))
        ]
    except DataFileError as exc:  # a problem of the file like the others: listed, exit 1
        errors = [exc]
    for error in errors:
        err_console.print(str(error), highlight=False, soft_wrap=True)
    if errors:
        raise typer.Exit(1)
    console.print(f"{path}: valid")


@rules_app.command("publish")
def rules_publish(
    path: RulesFile,
    message: Annotated[str, typer.Option(help="Why this version.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Store a rule set as a new version and make it active (workers reload within seconds)."""
    from fraudstream.rules.registry import RuleRegistry
    from fraudstream.rules.ruleset import read_text

    text = read_text(path)
    registry = RuleRegistry(connect(settings_from(config)), rule_schema())
    version = registry.publish(text, message=message, source=str(path))
    console.print(f"published and activated rules version {version}")


@rules_app.command("list")
def rules_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Published versions, newest first; the active one is marked."""
    import datetime as dt

    from fraudstream.rules.registry import RuleRegistry

    versions = RuleRegistry(connect(settings_from(config)), rule_schema()).versions()
    if as_json:
        print(json.dumps([v.__dict__ for v in versions]))
        return
    table = Table("version", "published", "active", "message")
    for v in versions:
        when = dt.datetime.fromtimestamp(v.published_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(v.version, when, "●" if v.active else "", v.message)
    console.print(table)


@rules_app.command("activate")
def rules_activate(version: str, config: ConfigOpt = None) -> None:
    """Make a published version the active one (e.g. to roll back)."""
    from fraudstream.rules.registry import RuleRegistry

    RuleRegistry(connect(settings_from(config)), rule_schema()).activate(version)
    console.print(f"rules version {version} is active")


@rules_app.command("diff")
def rules_diff(old: str, new: str, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """What changed between two published versions."""
    from fraudstream.rules.registry import RuleRegistry

    diff = RuleRegistry(connect(settings_from(config)), rule_schema()).diff(old, new)
    print(json.dumps(diff.to_dict()) if as_json else diff.text)


@rules_app.command("test")
def rules_test(
    transaction: Annotated[
        Path,
        typer.Argument(
            help="One transaction as a JSON object; features (at the top level or under "
            '"features") and model.score optional, missing values null. Unknown names and '
            "wrongly typed values are refused."
        ),
    ],
    rules_file: Annotated[
        Path | None, typer.Option("--rules", help="A YAML rule set (default: the active one).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Evaluate one transaction: which rules hit, and the value of every sub-expression."""
    from fraudstream.rules import explain, load_ruleset
    from fraudstream.rules.lists import Lists
    from fraudstream.rules.registry import RuleRegistry

    schema = rule_schema()
    columns = _transaction_columns(transaction, schema)
    ruleset = load_ruleset(rules_file, schema) if rules_file is not None else None
    client = connect(settings_from(config))
    if ruleset is None:
        ruleset = RuleRegistry(client, schema).active()[1]
    memberships = Lists(client).memberships(ruleset, columns)
    for item in explain(ruleset, columns, memberships):
        mark = "[green]hit[/]" if item.hit else "[dim]no[/]"
        extra = " (shadow)" if item.shadow else "" if item.enabled else " (disabled)"
        console.print(f"{mark} {item.rule_id} → {item.outcome}{extra}")
        for text, value in item.values:
            console.print(f"      {text} = {value!r}", highlight=False)


def _transaction_columns(path: Path, schema: RuleSchema) -> dict[str, Any]:
    """The columns of ``rules test``'s one transaction; read before Valkey is reached, so a
    bad file is named whether or not a server runs.

    Raises:
        DataFileError: the file, where in it (line:column, or the field) and what is wrong.
    """
    from fraudstream.errors import DataFileError, SchemaError
    from fraudstream.rules import columns_from_records
    from fraudstream.rules.ruleset import read_text

    text = read_text(path)
    if not text.strip():
        raise DataFileError(path, "empty file: expected one transaction as a JSON object")
    try:
        record = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        problem = exc.msg[:1].lower() + exc.msg[1:]
        raise DataFileError(
            f"{path}:{exc.lineno}:{exc.colno}", f"not valid JSON: {problem}"
        ) from None
    except RecursionError:
        raise DataFileError(path, "not valid JSON: nested too deeply") from None
    except (SchemaError, ValueError) as exc:
        raise DataFileError(path, str(exc)) from None
    try:
        return columns_from_records([record], schema)
    except SchemaError as exc:
        raise DataFileError(path, str(exc)) from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key: json keeps the last one silently, and the
    analyst would be testing a value they did not mean."""
    from fraudstream.errors import SchemaError

    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SchemaError(key[:64], "given twice in one object")
        out[key] = value
    return out


def _json_int(text: str) -> int:
    """An integer of the JSON, refusing the absurdly long before Python's 4300-digit limit
    does it with a message about ``sys.set_int_max_str_digits``."""
    if len(text) > 300:
        raise ValueError(f"not valid JSON: a number of {len(text):,} digits")
    return int(text)


@rules_app.command("backtest")
def rules_backtest(
    path: RulesFile,
    history: Annotated[
        Path | None,
        typer.Option(
            help="A labelled history (any format, see --column) or a `simulate` folder "
            "(or --database).",
            exists=True,
        ),
    ] = None,
    database: SourceDatabaseOpt = None,
    date_from: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD.")] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Compare against this rule set file.", exists=True)
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Score the history with this model version, or 'active': the rules read its "
            "model.score and the set decides as production does (its thresholds, the rules' "
            "points). Default: the rules alone."
        ),
    ] = None,
    columns: ColumnsFileOpt = None,
    column: ColumnOpt = None,
    date_format: DateFormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Replay a labelled history through a rule set: hits, precision, recall, amount caught."""
    from fraudstream.cli.data import features_for_history
    from fraudstream.errors import DataFileError
    from fraudstream.rules import load_ruleset
    from fraudstream.rules.backtest import backtest

    schema = rule_schema()
    ruleset = load_ruleset(path, schema)
    base = load_ruleset(baseline, schema) if baseline is not None else None
    reading = read_options(columns, column, date_format, skip_invalid)
    frame = features_for_history(
        *load_history(history, database, None, reading, config), date_from, date_to
    )
    if history is not None and "is_fraud" not in frame.columns:  # the store's always has it
        raise DataFileError(
            history,
            "no is_fraud column: a backtest needs labelled transactions (is_fraud or "
            "TX_FRAUD, or map one with --column is_fraud=COLUMN)",
        )
    scored = _model_scores(model, frame, config) if model is not None else None
    report = backtest(ruleset, frame, base, model=scored)
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
        return
    for table in report.tables():
        console.print(table)


def _model_scores(model: str, frame: pl.DataFrame, config: Path | None) -> ModelScores:
    """The scores of ``model`` ('active' or a version) on the history's features, with its
    thresholds and the configured step-up band, as the workers decide."""
    import numpy as np
    import polars as pl

    from fraudstream.cli.models import _registry
    from fraudstream.models.errors import ModelError
    from fraudstream.rules.backtest import ModelScores
    from fraudstream.rules.policy import Thresholds

    settings = settings_from(config)
    registry = _registry(settings)
    version = registry.active_version() if model == "active" else model
    if version is None:
        raise ModelError("--model active: no model is active (train one, or name a version)")
    bundle = registry.load(version)
    names = bundle.feature_names
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise ModelError(f"model {version}: the history lacks its features {missing[:3]}")
    x = frame.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
    points = bundle.thresholds
    return ModelScores(
        version,
        bundle.score(np.ascontiguousarray(x)).astype(np.float64),
        Thresholds(round(points["review"]), round(points["block"]), settings.step_up_score),
    )


@lists_app.command("add")
def lists_add(
    name: str,
    values: Annotated[list[str], typer.Argument(help="Entries (IPs, CIDR ranges, e-mails, …).")],
    kind: Annotated[str, typer.Option(help="ip, email, domain or string (new lists).")] = "string",
    ttl: Annotated[float | None, typer.Option(help="Seconds until these entries expire.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add entries to a list (created with --kind if new)."""
    from fraudstream.rules.lists import Lists

    lists = Lists(connect(settings_from(config)))
    if lists.kind(name) is None:
        lists.create(name, kind)  # type: ignore[arg-type]  # validated by Lists.create
    added = lists.add(name, values, ttl=ttl)
    console.print(f"{name}: {added} added, {lists.size(name)} entries")


@lists_app.command("remove")
def lists_remove(name: str, values: list[str], config: ConfigOpt = None) -> None:
    """Remove entries from a list."""
    from fraudstream.rules.lists import Lists

    removed = Lists(connect(settings_from(config))).remove(name, values)
    console.print(f"{name}: {removed} removed")


@lists_app.command("show")
def lists_show(
    name: Annotated[str | None, typer.Argument(help="A list (default: all lists).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Show the lists, or the entries of one list."""
    from fraudstream.rules.lists import Lists

    lists = Lists(connect(settings_from(config)))
    if name is None:
        table = Table("list", "kind", "entries")
        for n in lists.names():
            table.add_row(n, str(lists.kind(n)), f"{lists.size(n):,}")
        console.print(table)
        return
    for entry in lists.entries(name):  # one value a line, for scripts; an expiry after it
        expires = "" if entry.expires_at is None else f"  (expires {_utc(entry.expires_at)})"
        console.print(f"{entry.value}{expires}", highlight=False, markup=False)


def _utc(epoch_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@lists_app.command("delete")
def lists_delete(name: str, config: ConfigOpt = None) -> None:
    """Delete a whole list."""
    from fraudstream.rules.lists import Lists

    Lists(connect(settings_from(config))).delete(name)
    console.print(f"{name}: deleted")
