"""`callx extract` (the pipeline over a file, no server) and `callx submit` (a file to the API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.app import cli, err, settings_for
from app.logs import configure_logging


@cli.command()
def extract(
    input_path: Annotated[
        Path, typer.Argument(help="JSONL or CSV with `id` and `transcript` (or `text`).")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="JSONL written, one line per input record.")
    ],
    backend: Annotated[
        str | None, typer.Option(help="llamacpp or openai (default: configured).")
    ] = None,
    taxonomy: Annotated[
        Path | None, typer.Option(help="Taxonomy file (default: configured).")
    ] = None,
) -> None:
    """Extract product and reason from a file of calls with the workers' pipeline, no server."""
    from app.extraction.extractor import Extractor
    from app.progress import progress_bar
    from app.records import read_records

    settings = settings_for(backend, taxonomy)
    configure_logging("WARNING")
    records = read_records(input_path)
    extractor = Extractor.from_settings(settings)
    failures = 0
    with output.open("w", encoding="utf-8") as out, progress_bar() as bar:
        task = bar.add_task("extracting", total=len(records))
        for position, record in enumerate(records):
            line = _extract_line(extractor, record, position)
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            failures += line["status"] != "succeeded"
            bar.advance(task)
    err.print(f"{len(records)} records -> {output} ({failures} failed)")


def _extract_line(extractor: Any, record: dict[str, Any], position: int) -> dict[str, Any]:
    from app.records import record_text

    record_id = record.get("id", position)
    text = record_text(record)
    if text is None:
        return {
            "id": record_id,
            "product": None,
            "reason": None,
            "status": "failed",
            "error": "no transcript or text",
        }
    outcome = extractor(text)
    return {
        "id": record_id,
        "product": outcome.product,
        "reason": outcome.reason,
        "confidence": outcome.confidence,
        "status": outcome.status,
        "error": outcome.error,
        "truncated": outcome.truncated,
        "latency_ms": outcome.latency_ms,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "backend": outcome.backend,
        "model": outcome.model,
        "prompt_version": outcome.prompt_version,
        "taxonomy_version": outcome.taxonomy_version,
    }


@cli.command()
def submit(
    input_path: Annotated[
        Path, typer.Argument(help="JSONL or CSV of transcripts (`text` or `transcript`).")
    ],
    url: Annotated[
        str, typer.Option(help="Base URL of a running callx API.")
    ] = "http://127.0.0.1:8000",
    source: Annotated[str | None, typer.Option(help="Source for records that have none.")] = None,
    chunk: Annotated[int, typer.Option(help="Records per request.")] = 5000,
    api_key: Annotated[
        str | None, typer.Option(envvar="CALLX_API_KEY", help="API key (ingest scope).")
    ] = None,
) -> None:
    """Upload a file of transcripts to a running API in batches, with a progress bar."""
    from app.cli.submit import submit_file

    summary = submit_file(input_path, url=url, source=source, chunk=chunk, api_key=api_key)
    err.print(summary.render())
    raise typer.Exit(0 if summary.rejected == 0 else 1)
