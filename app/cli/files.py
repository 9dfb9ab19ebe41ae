"""`callx extract` (the pipeline over a file, no server) and `callx submit` (a file to the API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.app import build_extractor, cli, err, settings_for
from app.logs import configure_logging


@cli.command()
def extract(
    input_path: Annotated[
        Path,
        typer.Argument(
            help="JSONL, JSON or CSV: `text` (or `transcript`), `external_id` (or `id`)."
        ),
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
    from app.progress import progress_bar
    from app.records import read_records

    settings = settings_for(backend, taxonomy)
    configure_logging("WARNING")
    records = read_records(input_path)  # a bad file stops here, before the model is loaded
    extractor = build_extractor(settings)
    failures = 0
    with output.open("w", encoding="utf-8") as out, progress_bar() as bar:
        task = bar.add_task("extracting", total=len(records))
        for record in records:
            line = _extract_line(extractor, record)
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            failures += line["status"] != "succeeded"
            bar.advance(task)
    err.print(f"{len(records)} records -> {output} ({failures} failed)")
    if records and failures == len(records):
        raise typer.Exit(1)  # nothing extracted: a batch job's script must see it (as submit)


def _extract_line(extractor: Any, record: dict[str, Any]) -> dict[str, Any]:
    from app.records import record_language, record_text

    record_id = record.get("external_id")
    text = record_text(record)
    if text is None:
        return {
            "external_id": record_id,
            "product": None,
            "reason": None,
            "status": "failed",
            "error": "text is empty",
        }
    outcome = extractor(text, record_language(record))
    return {
        "external_id": record_id,
        "product": outcome.product,
        "reason": outcome.reason,
        "confidence": outcome.confidence,
        "confidence_calibrated": outcome.confidence_calibrated,
        "product_confidence": outcome.product_confidence,
        "status": outcome.status,
        "error": outcome.error,
        "truncated": outcome.truncated,
        "latency_ms": outcome.latency_ms,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "backend": outcome.backend,
        "model": outcome.model,
        "adapter_sha256": outcome.adapter_sha256,
        "reader_sha256": outcome.reader_sha256,
        "prompt_version": outcome.prompt_version,
        "taxonomy_version": outcome.taxonomy_version,
    }


@cli.command()
def submit(
    input_path: Annotated[
        Path, typer.Argument(help="JSONL, JSON or CSV of call records (as for the API).")
    ],
    url: Annotated[
        str, typer.Option(help="Base URL of a running callx API.")
    ] = "http://127.0.0.1:8000",
    source: Annotated[str | None, typer.Option(help="Source for records that have none.")] = None,
    chunk: Annotated[int, typer.Option(help="Records per request.")] = 5000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="CALLX_API_KEY", help="API key (ingest scope; admin with --wait: it reads too)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every call is extracted, with progress.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="With --wait: the results, one per record in the file's order (.jsonl or .csv).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds.")
    ] = 24 * 3600,
) -> None:
    """Upload a file of transcripts to a running API in batches, with a progress bar; with
    --wait, wait for the results and write them to --output in the file's order."""
    from collections import Counter

    import httpx

    from app.cli.errors import CliError
    from app.cli.results import check_output_path, collect_results, wait_for_batches, write_results
    from app.cli.submit import submit_file

    if output is not None:
        if not wait:
            raise CliError("--output needs --wait (results exist once the calls are extracted)")
        check_output_path(output)
    summary = submit_file(input_path, url=url, source=source, chunk=chunk, api_key=api_key)
    err.print(summary.render(), markup=False, highlight=False)
    if wait:
        headers = {"x-api-key": api_key} if api_key else {}
        with httpx.Client(base_url=url.rstrip("/"), timeout=60, headers=headers) as client:
            wait_for_batches(
                client, summary.batches, summary.accepted, poll_s=1.0, timeout_s=timeout
            )
            if output is not None:
                rows = collect_results(client, summary, poll_s=1.0, timeout_s=timeout)
                write_results(output, rows)
                counts = Counter(row["status"] for row in rows)
                listed = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
                err.print(f"{len(rows)} results -> {output} ({listed})", markup=False)
    raise typer.Exit(0 if summary.rejected == 0 else 1)
