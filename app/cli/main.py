"""callx: serve, worker, migrate, extract, submit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from app.config import get_settings
from app.logs import configure_logging

cli = typer.Typer(
    help="callx: customer-call transcripts in, product and reason out.", no_args_is_help=True
)
err = Console(stderr=True)


def main() -> None:
    cli()


@cli.command()
def migrate(revision: str = "head") -> None:
    """Apply the database migrations (alembic upgrade)."""
    from app.db.migrate import upgrade

    settings = get_settings()
    configure_logging(settings.log_level)
    upgrade(settings.database_url, revision)
    err.print(f"database at revision {revision}")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    worker: Annotated[
        bool | None,
        typer.Option(help="Also start a worker (default: only with the embedded local broker)."),
    ] = None,
    migrate_db: Annotated[
        bool | None,
        typer.Option("--migrate/--no-migrate", help="Apply migrations first (default: on SQLite)."),
    ] = None,
) -> None:
    """Run the API. With no configuration: SQLite, a local broker, a worker and the local model."""
    import uvicorn

    from app.db.migrate import upgrade
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    if migrate_db if migrate_db is not None else settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    child: subprocess.Popen[bytes] | None = None
    if worker if worker is not None else settings.is_embedded_broker:
        child = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"])
        err.print(
            f"started an embedded worker (pid {child.pid}), backend {settings.extraction.backend}"
        )
    err.print(f"callx API on http://{host}:{port} (docs at /docs)")
    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    finally:
        if child is not None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


@cli.command()
def worker(
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated (default: interactive,batch).")
    ] = None,
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (or threads).")] = None,
    pool: Annotated[str | None, typer.Option(help="prefork (default), threads or solo.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Node name (default: callx-<backend>@<host>).")
    ] = None,
) -> None:
    """Run a Celery worker for the configured backend. Models are loaded after the fork."""
    settings = get_settings()
    cores = os.cpu_count() or 1
    backend = settings.extraction.backend
    if backend == "llamacpp":
        # Keep processes x threads <= cores: oversubscribing makes every call far slower.
        threads = settings.llamacpp.n_threads or max(1, cores // (concurrency or 1))
        concurrency = concurrency or max(1, cores // threads)
        os.environ["CALLX_LLAMACPP__N_THREADS"] = str(threads)
        get_settings.cache_clear()
        pool = pool or "prefork"
    elif backend == "openai":
        pool, concurrency = pool or "threads", concurrency or 64
    else:
        pool, concurrency = pool or "prefork", concurrency or cores
    configure_logging(settings.log_level)
    from workers.celery_app import celery_app

    queue_list = queues or f"{settings.broker.interactive_queue},{settings.broker.batch_queue}"
    celery_app.worker_main(
        [
            "worker",
            f"--queues={queue_list}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--hostname={name or f'callx-{backend}@%h'}",
            f"--loglevel={settings.log_level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


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
    from app.cli.progress import progress_bar
    from app.extraction.extractor import Extractor
    from app.records import read_records

    settings = _settings_for(backend, taxonomy)
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


def _settings_for(backend: str | None, taxonomy: Path | None) -> Any:
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


@cli.command("eval")
def evaluate(
    dataset: Annotated[Path, typer.Option(help="Labelled JSONL: id, transcript, reason, product.")],
    backend: Annotated[
        list[str] | None,
        typer.Option(help="NAME[:key=value,...], repeatable, e.g. llamacpp:lora_path=a.gguf"),
    ] = None,
    taxonomy: Annotated[Path | None, typer.Option(help="The dataset's taxonomy file.")] = None,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate a seeded sample of N records.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Directory for report.md and images.")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
) -> None:
    """Score backend configurations side by side on a labelled dataset (same pipeline)."""
    from datetime import UTC, datetime

    from rich.table import Table

    from app.cli.progress import progress_bar
    from app.evaluation.report import summary_rows, write_json, write_report
    from app.evaluation.runner import BackendConfig, load_dataset
    from app.evaluation.runner import evaluate as run_eval
    from app.extraction.extractor import Extractor
    from app.extraction.prompts import PROMPT_VERSION
    from schemas.taxonomy import load_taxonomy

    configure_logging("WARNING")
    base = _settings_for(None, taxonomy)
    tax = load_taxonomy(base.extraction.taxonomy_path)
    records = load_dataset(dataset, tax, limit, seed)
    configs = [BackendConfig.parse(spec) for spec in (backend or [base.extraction.backend])]
    results = []
    with progress_bar() as bar:
        for config in configs:
            extractor = Extractor.from_settings(config.settings(base))
            task = bar.add_task(config.label, total=len(records))
            results.append(run_eval(extractor, config, records, lambda t=task: bar.advance(t)))
    meta = {
        "dataset": str(dataset),
        "records": len(records),
        "limit": limit,
        "seed": seed,
        "taxonomy_version": tax.version,
        "prompt_version": PROMPT_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    rows = summary_rows(results)
    table = Table(*rows[0])
    for row in rows[1:]:
        table.add_row(*row)
    Console().print(table)
    if json_path is not None:
        write_json(json_path, results, meta)
    if report is not None:
        err.print(f"report: {write_report(report, results, list(tax.codes), meta)}")


if __name__ == "__main__":
    main()
