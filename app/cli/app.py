"""The `callx` Typer application, shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from app.config import get_settings

cli = typer.Typer(
    help="callx: customer-call transcripts in, product and reason out.", no_args_is_help=True
)
err = Console(stderr=True)


def settings_for(backend: str | None, taxonomy: Path | None) -> Any:
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
