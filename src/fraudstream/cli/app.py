"""The Typer application and its sub-applications (commands register themselves on them)."""

from __future__ import annotations

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Real-time fraud detection and transaction risk scoring.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the effective configuration.")
valkey_app = typer.Typer(no_args_is_help=True, help="Manage the embedded Valkey server.")
app.add_typer(config_app, name="config")
app.add_typer(valkey_app, name="valkey")


def summarize(typer_app: typer.Typer) -> None:
    """Give every command without a ``short_help`` the first sentence of its docstring, on
    one line: the command lists of ``--help`` show that, where they would otherwise show the
    whole first paragraph with the docstring's own line breaks."""
    for info in typer_app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if info.short_help is None and doc:
            info.short_help = first_sentence(doc)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            summarize(group.typer_instance)


def first_sentence(doc: str) -> str:
    """The docstring's first sentence, its lines joined.

    >>> first_sentence("Store every decision (own group on the\\n    stream). Prints lag.")
    'Store every decision (own group on the stream).'
    """
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    depth = 0
    for i, char in enumerate(paragraph):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char in ".;" and depth == 0 and (i + 1 == len(paragraph) or paragraph[i + 1] == " "):
            return paragraph[: i + 1] if char == "." else paragraph[:i] + "."
    return paragraph
