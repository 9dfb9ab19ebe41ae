"""`callx labels export`: the calls people labelled, as data for `callx eval` and `finetune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli, err, open_database, parse_time
from app.cli.errors import CliError

labels_cli = typer.Typer(
    help="Human labels from the review queue: export them as training and test data.",
    no_args_is_help=True,
)
cli.add_typer(labels_cli, name="labels")


@labels_cli.command("export")
def labels_export(
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="A directory: train.jsonl, dev.jsonl, test.jsonl, audit.jsonl and "
            "manifest.json are written into it (replaced if there).",
        ),
    ],
    since: Annotated[
        str | None,
        typer.Option(help="Labels written at or after this time (ISO 8601; no offset: UTC)."),
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only the calls of this source.")] = None,
    taxonomy_version: Annotated[
        str | None,
        typer.Option(
            help="Only the labels of this taxonomy version (needed when there are "
            "several: a file mixes no two taxonomies)."
        ),
    ] = None,
) -> None:
    """Write the labelled calls as JSONL (`id`, `text`, `reason`, `product`, `audit`,
    `provenance`): the audit sample's calls (drawn at random) in audit.jsonl, an unbiased test
    set; the others split into train, dev and test by a stable hash of the call's id. Files
    that `callx eval --dataset` and `callx finetune --train` read as they are."""
    from app.db.session import session_scope
    from app.review.export import ExportError, export_labels
    from schemas.api import normalize_source

    start = parse_time("--since", since)
    try:
        wanted_source = None if source is None else normalize_source(source)
    except ValueError as exc:
        raise CliError(f"--source {source!r}: {exc}") from None
    engine, sessions = open_database("labels")
    try:
        with session_scope(sessions) as session:
            summary = export_labels(
                session,
                output,
                since=start,
                source=wanted_source,
                taxonomy_version=taxonomy_version,
            )
    except ExportError as exc:
        raise CliError(str(exc)) from None
    finally:
        engine.dispose()
    if not summary.total:
        err.print("no labelled calls match: wrote empty files", markup=False)
    for split, what in (
        ("train", "to train on"),
        ("dev", "to choose on"),
        ("test", "to test on (mostly calls the model was unsure of)"),
        ("audit", "the audit sample: an unbiased test set, never to train on"),
    ):
        typer.echo(f"{output / (split + '.jsonl')}: {summary.counts[split]} calls, {what}")
    if summary.taxonomy_version:
        typer.echo(f"taxonomy version: {summary.taxonomy_version}")
