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

from app.auth.keys import Scope
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

    from app.auth.policy import OpenApiRefusedError, decide_auth
    from app.db.migrate import upgrade
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        auth = decide_auth(settings.auth, host)
    except OpenApiRefusedError as exc:
        err.print(f"callx serve: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if migrate_db if migrate_db is not None else settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    child: subprocess.Popen[bytes] | None = None
    if worker if worker is not None else settings.is_embedded_broker:
        # Its own process group: stopping it stops its pool processes too.
        child = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], start_new_session=True
        )
        err.print(
            f"started an embedded worker (pid {child.pid}), backend {settings.extraction.backend}"
        )
    err.print(f"callx API on http://{host}:{port} (docs at /docs)")
    err.print(auth.message, markup=False, highlight=False)
    # uvicorn re-raises SIGTERM once it has shut down: turn it into SystemExit so that the
    # `finally` below runs and stops the embedded worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(create_app(settings, bind_host=host), host=host, port=port, log_config=None)
    finally:
        if child is not None:
            _stop_group(child)


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (a warm shutdown), then SIGKILL what is left."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@cli.command()
def worker(
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated (default: interactive,batch).")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Worker processes (or threads). openai backend: calls in flight, all "
            "processes together (default: CALLX_OPENAI__WORKER_CONCURRENCY, 200)."
        ),
    ] = None,
    pool: Annotated[str | None, typer.Option(help="prefork (default), threads or solo.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Node name (default: callx-<backend>@<host>).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics of all worker processes here.")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="openai backend: processes the threads are spread over (default: one per "
            "100 threads, at most one per core)."
        ),
    ] = None,
) -> None:
    """Run a Celery worker for the configured backend. Models are loaded after the fork."""
    if metrics_port is not None:
        # Before prometheus_client is imported: every worker process writes its samples here.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="callx-metrics-")
        os.environ["CALLX_WORKER_METRICS_PORT"] = str(metrics_port)
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
        # Calls wait on the network: threads, hundreds of them. One process's GIL does about
        # 100 calls/s of client work (HTTP, validation, two short transactions), so more
        # calls in flight than that are spread over processes, one per core at most.
        pool, concurrency = pool or "threads", concurrency or settings.openai.worker_concurrency
        if pool == "threads":
            processes = processes or settings.openai.worker_processes
            processes = processes or min(cores, -(-concurrency // 100))
            processes = max(1, min(processes, concurrency))
            if processes > 1:
                configure_logging(settings.log_level)
                raise typer.Exit(
                    _run_worker_processes(
                        processes,
                        concurrency,
                        queues,
                        name or "callx-openai@%h",
                        settings.database.pool_size,
                    )
                )
    else:
        pool, concurrency = pool or "prefork", concurrency or cores
    configure_logging(settings.log_level)
    from workers.celery_app import celery_app, worker_runtime

    if pool != "prefork":
        # Nothing forks: build the backend now, not under a lock on the first task while
        # every thread waits (and a configuration error stops the worker at once).
        worker_runtime()
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


def _run_worker_processes(
    processes: int, concurrency: int, queues: str | None, name: str, pool_size: int
) -> int:
    """Run `processes` threads-pool workers (the threads split between them) and watch them:
    signals are passed on; one that dies is restarted, unless it dies within 30 s of its
    start (then all are stopped: a configuration error does not loop).

    The database pool is split between them too: a host holds as many PostgreSQL connections
    as one process would (pool_size, plus as many in overflow), however many processes."""
    import time

    base, at, host = name.partition("@")
    commands = []
    for index in range(processes):
        share = concurrency // processes + (index < concurrency % processes)
        command = [sys.executable, "-m", "app.cli", "worker", "--pool=threads"]
        command += [
            f"--concurrency={share}",
            "--processes=1",
            f"--name={base}-{index + 1}{at}{host}",
        ]
        command += [f"--queues={queues}"] if queues else []
        commands.append(command)
    # One metrics endpoint for all (the first process's), over every process's samples.
    port = os.environ.pop("CALLX_WORKER_METRICS_PORT", None)
    shared = {**os.environ, "CALLX_DATABASE__POOL_SIZE": str(max(2, -(-pool_size // processes)))}
    envs = [
        {**shared, **({"CALLX_WORKER_METRICS_PORT": port} if port and i == 0 else {})}
        for i in range(processes)
    ]

    def spawn(index: int) -> tuple[subprocess.Popen[bytes], float]:
        # A process group of its own: a signal to ours (Ctrl-C, kill -TERM -PGID) reaches it
        # once, passed on by us, and Celery never sees a second SIGTERM mid-shutdown.
        child = subprocess.Popen(
            commands[index], env=envs[index], process_group=0, preexec_fn=_die_with_parent
        )
        return child, time.monotonic()

    children = [spawn(i) for i in range(processes)]
    err.print(f"{processes} worker processes, {concurrency} threads in all")
    stopping: list[int] = []

    def forward(signum: int, _: object) -> None:
        stopping.append(signum)
        for child, _started in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, forward)
    while True:
        for index, (child, started) in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            if time.monotonic() - started < 30:
                err.print(f"worker process {index + 1} exited ({code}) at start: stopping all")
                forward(signal.SIGTERM, None)
                break
            err.print(f"worker process {index + 1} exited ({code}): restarting it")
            children[index] = spawn(index)
        if stopping and all(child.poll() is not None for child, _ in children):
            return max([0, *(child.returncode or 0 for child, _ in children)])
        time.sleep(0.5)


def _die_with_parent() -> None:
    """In a child, before exec: killed when the parent dies (Linux), as one process would be:
    a SIGKILLed worker loses its children too, never leaves them orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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


# ---- API keys ------------------------------------------------------------------------------

keys_cli = typer.Typer(
    help="API keys for the REST API: create (shown once), list, revoke.", no_args_is_help=True
)
cli.add_typer(keys_cli, name="keys")


def _api_key_database() -> Any:
    """(engine, sessionmaker) on the configured database; on SQLite migrated first, as `serve`
    does."""
    from sqlalchemy import inspect

    from app.db.migrate import upgrade
    from app.db.session import build_engine, build_sessionmaker

    settings = get_settings()
    configure_logging("WARNING")
    if settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    engine = build_engine(settings)
    if not inspect(engine).has_table("api_keys"):
        engine.dispose()
        err.print("this database has no api_keys table yet: run `callx migrate` first")
        raise typer.Exit(1)
    return engine, build_sessionmaker(engine)


def _when(value: Any) -> str:
    from datetime import UTC

    if value is None:
        return "-"
    value = value.astimezone(UTC) if value.tzinfo is not None else value
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


@keys_cli.command("create")
def keys_create(
    scope: Annotated[
        Scope,
        typer.Option(
            help="ingest: submit transcripts and batches; read: transcripts, batches, "
            "extractions, analytics; admin: everything."
        ),
    ],
    name: Annotated[
        str | None, typer.Option(help="What or who the key is for, e.g. crm-sync.")
    ] = None,
) -> None:
    """Create an API key and print it, this once: only a hash of it is stored."""
    from app.auth.service import create_api_key
    from app.db.session import session_scope

    if name is not None and len(name) > 100:
        raise typer.BadParameter("at most 100 characters", param_hint="--name")
    engine, sessions = _api_key_database()
    with session_scope(sessions) as session:
        key, plaintext = create_api_key(session, scope, name or None)
    engine.dispose()
    err.print(
        f"created API key {key.id} (scope {scope}); it is shown only this once: store it now. "
        "Send it as the X-API-Key header.",
        markup=False,
        highlight=False,
    )
    typer.echo(plaintext)


@keys_cli.command("list")
def keys_list() -> None:
    """The API keys: id, name, scope, created, last used, revoked. Never their secrets."""
    from app.auth.service import list_api_keys
    from app.db.session import session_scope

    engine, sessions = _api_key_database()
    with session_scope(sessions) as session:
        keys = list_api_keys(session)
    engine.dispose()
    if not keys:
        err.print("no API keys yet: callx keys create --scope ingest|read|admin", markup=False)
        return
    rows = [("ID", "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED")]
    rows += [
        (
            k.id,
            k.name or "-",
            k.scope,
            _when(k.created_at),
            _when(k.last_used_at),
            _when(k.revoked_at),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@keys_cli.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `callx keys list`).")],
) -> None:
    """Revoke an API key: from now on requests with it get 401."""
    from datetime import UTC, datetime

    from app.auth.keys import parse_key
    from app.auth.service import find_api_key, revoke_api_key
    from app.db.session import session_scope

    engine, sessions = _api_key_database()
    with session_scope(sessions) as session:
        key = find_api_key(session, key_id)
        already = key is not None and key.revoked_at is not None
        if key is not None:
            revoke_api_key(session, key, datetime.now(UTC))
    engine.dispose()
    if key is None:
        parsed = parse_key(key_id)
        # Never echo a whole key back: only its id.
        err.print(f"no API key with id {parsed[0] if parsed else key_id!r}", markup=False)
        raise typer.Exit(1)
    if already:
        err.print(f"API key {key.id} was already revoked ({_when(key.revoked_at)})", markup=False)
    else:
        named = f", {key.name}" if key.name else ""
        err.print(f"revoked API key {key.id} ({key.scope}{named})", markup=False)


@cli.command()
def finetune(
    train: Annotated[
        list[str],
        typer.Option(
            help="Labelled JSONL/CSV (transcript or text, reason, product). FILE@TAXONOMY gives "
            "the file its own taxonomy: a file or a built-in name (default, intents8). Repeatable."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Adapter GGUF to write (model card: .json).")
    ],
    taxonomy: Annotated[
        str | None, typer.Option(help="Taxonomy of files without @ (default: configured).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data (default 1).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps, instead.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop cleanly and export when the time is up.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per batch.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warmup, cosine decay).")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option(help="LoRA alpha (scale alpha/rank).")] = 32.0,
    max_tokens: Annotated[
        int, typer.Option(help="Tokens per example; longer calls are cut in the middle.")
    ] = 1024,
    limit_per_file: Annotated[
        int | None, typer.Option(help="At most N records per file (seeded, by reason).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data order and the LoRA init.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 50,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Checkpoints (default: OUTPUT.ckpt/).")
    ] = None,
    base_model: Annotated[
        Path | None, typer.Option(help="Base GGUF (default: the configured local model).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 where the hardware has it), bf16 or fp32.")
    ] = "auto",
) -> None:
    """Train a LoRA adapter of the local model on labelled calls, in llama.cpp's GGUF format."""
    from app.finetune import MissingExtraError, require_extra

    try:
        require_extra()
    except MissingExtraError as exc:
        err.print(f"callx finetune: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    from app.finetune.command import run_command
    from app.finetune.job import Hyperparameters

    hyper = Hyperparameters(
        rank=rank,
        alpha=alpha,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_tokens=max_tokens,
        limit_per_file=limit_per_file,
        seed=seed,
    )
    status = run_command(
        get_settings(),
        err,
        train=train,
        output=output,
        taxonomy=taxonomy,
        base_model=base_model,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        hyper=hyper,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        precision=precision,
    )
    raise typer.Exit(status)


if __name__ == "__main__":
    main()
