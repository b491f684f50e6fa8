"""The analysts' review queue from the terminal: `reviews list`, `claim ID`, `resolve ID`.

The same desk as the HTTP API (`fraudstream.reviews.ReviewDesk`), on the SQL store and the
labels stream of the settings; the analyst is ``--as`` (default: the login name).
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from fraudstream.cli.app import app
from fraudstream.cli.common import ConfigOpt, JsonOpt, connect, console, settings_from
from fraudstream.cli.store import DatabaseOpt

if TYPE_CHECKING:
    from collections.abc import Callable

    from fraudstream.config import Settings
    from fraudstream.reviews import ReviewDesk
    from fraudstream.store.reviews import Review

reviews_app = typer.Typer(no_args_is_help=True, help="The analysts' review queue.")
app.add_typer(reviews_app, name="reviews")

AnalystOpt = Annotated[
    str | None,
    typer.Option(
        "--as", help="Who claims or resolves (default: your login name).", show_default=False
    ),
]
ReviewIdArg = Annotated[int, typer.Argument(help="The review's id (see `reviews list`).")]
T = TypeVar("T")
V = TypeVar("V")


def _checked(check: Callable[[V], T], value: V) -> T:
    """``check(value)``, its `SchemaError` as the flag's `BadParameter`."""
    from fraudstream.errors import SchemaError

    try:
        return check(value)
    except SchemaError as exc:
        raise typer.BadParameter(exc.problem, param_hint=f"--{exc.field}") from None


def _desk(settings: Settings) -> ReviewDesk:
    from fraudstream.reviews import ReviewDesk
    from fraudstream.store.engine import create_engine, database_url
    from fraudstream.stream.keys import StreamKeys
    from fraudstream.stream.producer import Producer

    keys = StreamKeys.of(settings)
    producer = Producer(connect(settings), keys)
    return ReviewDesk(create_engine(database_url(settings)), producer)


@reviews_app.command("list")
def reviews_list(
    status: Annotated[str, typer.Option(help="open, claimed or resolved.")] = "open",
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.", min=1)] = 100,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The queue, oldest decision first."""
    import msgspec

    from fraudstream.store.reviews import check_limit, check_status

    wanted, count = _checked(check_status, status), _checked(check_limit, limit)
    found = _desk(settings_from(config, database_url=database)).queue(wanted, count)
    if as_json:
        print(msgspec.json.encode(found).decode())
        return
    console.print(_table(found))


def _table(found: list[Review]) -> Table:
    table = Table("id", "decided", "transaction", "score", "amount", "customer", "reasons")
    table.add_column("status")
    table.add_column("assignee")
    for r in found:
        table.add_row(
            str(r.review_id),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.transaction_id,
            str(r.score),
            "" if r.amount is None else f"{r.amount:,.2f}",
            r.customer_id or "",
            ", ".join(r.reasons),
            r.status if r.verdict is None else f"{r.status} ({r.verdict})",
            r.assignee or "",
        )
    return table


@reviews_app.command("claim")
def reviews_claim(
    review_id: ReviewIdArg,
    analyst: AnalystOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Take a review (refused if another analyst holds it, or it is resolved)."""
    desk = _desk(settings_from(config, database_url=database))
    review = desk.claim(review_id, analyst or getpass.getuser())
    console.print(
        f"review {review.review_id} ({review.transaction_id}) claimed by {review.assignee}"
    )


@reviews_app.command("resolve")
def reviews_resolve(
    review_id: ReviewIdArg,
    verdict: Annotated[str, typer.Option("--verdict", help="fraud or genuine.")],
    note: Annotated[str, typer.Option("--note", help="Why (kept with the review).")] = "",
    analyst: AnalystOpt = None,
    database: DatabaseOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Close a review with a verdict: stored with a label (source review), which is
    published for the workers when they can use it."""
    import msgspec

    from fraudstream.store.reviews import check_verdict

    checked = _checked(check_verdict, verdict)
    desk = _desk(settings_from(config, database_url=database))
    done = desk.resolve(review_id, analyst or getpass.getuser(), checked, note)
    if as_json:
        print(msgspec.json.encode(done).decode())
        return
    label = "label published" if done.published else _UNPUBLISHED
    console.print(f"review {review_id} ({done.review.transaction_id}) resolved: {verdict}, {label}")


_UNPUBLISHED = "label stored, not published (the store lacks the transaction's terminal and time)"
