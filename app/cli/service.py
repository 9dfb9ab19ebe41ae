"""`callx migrate`, `callx serve` and `callx worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Annotated

import typer

from app.cli.app import cli, err
from app.config import get_settings
from app.logs import configure_logging


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
    from app.extraction.extractor import check_extraction_settings
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level)
    try:
        auth = decide_auth(settings.auth, host)
    except OpenApiRefusedError as exc:
        err.print(f"callx serve: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    with_worker = worker if worker is not None else settings.is_embedded_broker
    # The API queues calls for its taxonomy (a broken file stops it); the worker it starts
    # must be able to run, or calls would wait forever behind an API that looks healthy.
    backend, _ = check_extraction_settings(settings)
    app = create_app(settings, bind_host=host)
    if migrate_db if migrate_db is not None else settings.database_url.startswith("sqlite"):
        upgrade(settings.database_url)
    child: subprocess.Popen[bytes] | None = None
    if with_worker:
        # Its own process group: stopping it stops its pool processes too.
        child = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], start_new_session=True
        )
        err.print(
            f"started an embedded worker (pid {child.pid}): {backend.name}, {backend.model}",
            markup=False,
            highlight=False,
        )
    err.print(f"callx API on http://{host}:{port} (docs at /docs)")
    err.print(auth.message, markup=False, highlight=False)
    # uvicorn re-raises SIGTERM once it has shut down: turn it into SystemExit so that the
    # `finally` below runs and stops the embedded worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    died, stopping = threading.Event(), threading.Event()
    if child is not None:
        threading.Thread(
            target=_watch_worker,
            args=(child, died, stopping),
            name="callx-watch-worker",
            daemon=True,
        ).start()
    try:
        uvicorn.run(app, host=host, port=port, log_config=None)
    finally:
        stopping.set()
        if child is not None:
            _stop_group(child, settings.extraction.stop_grace_s)
        if died.is_set():  # here, not after: uvicorn's exit on SIGTERM is a SystemExit
            err.print(
                f"callx serve: the embedded worker exited (code {child and child.returncode}); "
                "its log is above. Stopped.",
                markup=False,
                highlight=False,
            )
            raise typer.Exit(2)  # noqa: B012 (this exit code, not the SystemExit's)


def _watch_worker(
    child: subprocess.Popen[bytes], died: threading.Event, stopping: threading.Event
) -> None:
    """Stop the server when its embedded worker dies: an API whose calls nobody will ever
    extract must not look healthy."""
    child.wait()
    if not stopping.is_set():
        died.set()
        os.kill(os.getpid(), signal.SIGTERM)


def _stop_group(child: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the worker's process group (a warm shutdown: its calls in hand end within
    `grace_s` or go back to the queue), then SIGKILL what is left."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=grace_s + 15)
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
            "50 threads, at most two per core)."
        ),
    ] = None,
) -> None:
    """Run a Celery worker for the configured backend. Models are loaded after the fork."""
    import tempfile

    from app.extraction.extractor import check_extraction_settings
    from workers.plan import plan_worker

    settings = get_settings()
    configure_logging(settings.log_level)
    check_extraction_settings(settings)  # before any process starts: one message, exit 2
    plan = plan_worker(
        settings.extraction.backend,
        os.cpu_count() or 1,
        concurrency=concurrency,
        pool=pool,
        processes=processes,
        llama_threads=settings.llamacpp.n_threads,
        openai_concurrency=settings.openai.worker_concurrency,
        openai_processes=settings.openai.worker_processes,
    )
    if metrics_port is not None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus_client reads this when it is first imported (below, with the worker) and
        # every process of the worker, forked or started, inherits it: their samples meet there.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="callx-metrics-")
    name = name or f"callx-{plan.backend}@%h"
    if plan.processes > 1:
        from workers.supervisor import run_worker_processes

        raise typer.Exit(
            run_worker_processes(
                plan,
                queues=queues,
                name=name,
                database_pool_size=plan.database_pool_size(settings.database.pool_size),
                metrics_port=metrics_port,
                say=err.print,
            )
        )
    if plan.llama_threads is not None:
        llamacpp = settings.llamacpp.model_copy(update={"n_threads": plan.llama_threads})
        settings = settings.model_copy(update={"llamacpp": llamacpp})
    from workers.celery_app import run_worker

    run_worker(settings, plan, queues=queues, name=name, metrics_port=metrics_port)
