"""The `callx` Typer application, shared by the command modules."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console

from app.config import ExtractionSettings, get_settings

cli = typer.Typer(
    help="callx: customer-call transcripts in, product and reason out.", no_args_is_help=True
)
# Messages are not wrapped at the terminal's width: a path or a URL cut in two is not one.
err = Console(stderr=True, soft_wrap=True)


@dataclass
class Invocation:
    """What the global options asked for, and the command run (for its error messages)."""

    command: str | None = None
    debug: bool = False


invocation = Invocation()


@cli.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", envvar="CALLX_DEBUG", help="Show the traceback of an error, not one line."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            envvar="CALLX_VERBOSE",
            help="Show the libraries' own output too (llama.cpp, Celery's banner).",
        ),
    ] = False,
) -> None:
    invocation.command = ctx.invoked_subcommand
    invocation.debug = debug
    if verbose:
        # A setting (CALLX_VERBOSE), so that the worker processes started by this one see it.
        os.environ["CALLX_VERBOSE"] = "true"


def build_extractor(settings: Any) -> Any:
    """The pipeline for `settings`; a configuration it cannot be built from (a model or
    adapter file missing, an unknown chat format, no API key) is the user's error."""
    from app.cli.errors import CliError
    from app.extraction.extractor import Extractor, check_extraction_settings

    try:
        check_extraction_settings(settings)  # files and names, before a model is loaded
        return Extractor.from_settings(settings)
    except ValueError as exc:  # TaxonomyError included
        raise CliError(str(exc)) from exc


# The backends a command's --backend names: the setting's own (fake: the tests' scripted one).
BACKENDS: tuple[str, ...] = get_args(ExtractionSettings.model_fields["backend"].annotation)


def settings_for(backend: str | None, taxonomy: Path | None) -> Any:
    """The settings, with a command's --backend and --taxonomy (checked here, so that their
    errors name the option, not the variable they replace)."""
    from app.cli.errors import CliError

    if backend is not None and backend not in BACKENDS:
        raise CliError(f"--backend: unknown backend {backend!r}; use llamacpp or openai")
    if taxonomy is not None and not taxonomy.is_file():
        what = "a directory, not a taxonomy file" if taxonomy.is_dir() else "no such file"
        raise CliError(f"--taxonomy: {taxonomy}: {what}")
    settings = get_settings()
    update: dict[str, Any] = {}
    if backend is not None:
        update["backend"] = backend
    if taxonomy is not None:
        update["taxonomy_path"] = taxonomy
    if update:
        settings = settings.model_copy(
            update={"extraction": settings.extraction.model_copy(update=update)}
        )
    return settings


def open_database(table: str) -> Any:
    """(engine, sessionmaker) on the configured database; on SQLite migrated first, as `serve`
    does. A database without `table` (not migrated) stops the command: exit 1, one line."""
    from sqlalchemy import inspect

    from app.db.migrate import upgrade
    from app.db.session import build_engine, build_sessionmaker
    from app.logs import configure_logging

    settings = get_settings()
    configure_logging("WARNING")
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    engine = build_engine(settings)
    if not inspect(engine).has_table(table):
        engine.dispose()
        err.print(f"this database has no {table} table yet: run `callx migrate` first")
        raise typer.Exit(1)
    return engine, build_sessionmaker(engine)


def parse_time(option: str, value: str | None) -> Any:
    """An option's ISO 8601 date or date-time (UTC where it has no offset); None if absent."""
    from datetime import UTC, datetime

    from app.cli.errors import CliError

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"{option} {value!r}: not an ISO 8601 date or date-time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
