"""`callx migrate`, `callx serve` and `callx worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
            "50 threads, at most two per core)."
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
        # Calls wait on the network: threads, hundreds of them, spread over a few processes
        # (default_worker_processes).
        pool, concurrency = pool or "threads", concurrency or settings.openai.worker_concurrency
        if pool == "threads":
            processes = processes or settings.openai.worker_processes
            processes = processes or default_worker_processes(concurrency, cores)
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
    from workers.celery_app import celery_app, set_pool_concurrency, worker_runtime

    if pool != "prefork":
        # Nothing forks: build the backend now, not under a lock on the first task while
        # every thread waits (and a configuration error stops the worker at once).
        set_pool_concurrency(concurrency)
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


THREADS_PER_PROCESS = 50


def default_worker_processes(concurrency: int, cores: int) -> int:
    """Processes an API backend's worker spreads its calls in flight over: one per 50 threads,
    at most two per core. Each call's client work (HTTP, validation, the group-committed
    writes) holds the GIL a few milliseconds: with a hundred threads on one GIL, calls queue
    for it and each spends longer outside the network wait (measured: 200 calls in flight
    over 2, 4 and 6 processes on 2 cores gave 0.75, 0.88 and 0.82 of the ideal throughput)."""
    return max(1, min(2 * cores, -(-concurrency // THREADS_PER_PROCESS)))


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
