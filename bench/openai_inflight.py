"""How many openai-backend calls one `callx worker` keeps in flight, and at what throughput.

Real PostgreSQL and Redis, one `callx worker` subprocess (backend openai) and an
OpenAI-compatible stub that answers every request after exactly `latency_s` (1.0 s), in a
process of its own. Calls go in through the service path (app.ingest.service.submit_batch:
rows in PostgreSQL, messages on Redis), in batches of 100 by default: above 100 a worker fans
a batch out, and its CPU goes to that while measured. Measured at the stub: requests in flight
(peak, and mean over the steady window) and completions per second over the steady window
(the 10th to the 90th percentile of completion times). Ideal throughput = the worker's
concurrency / latency. Also: the worker's CPU per call, PostgreSQL connections (peak).

The floor is the stub's own capacity in the same run: a plain client of the same concurrency
(threads posting with httpx, keep-alive) against the same stub, measured the same way. If it
falls short of the ideal, the harness (this machine) is what limits, not callx.

    python -m bench.openai_inflight [--quick] [--concurrency 200] [--processes N]
        [--latency-s 1.0] [--batch-size 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import BenchRow, report
from bench.inflight_stub import StubProcess, plain_client_floor, steady_figures
from workers.plan import default_worker_processes

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-openai.json"


class ConnectionSampler:
    """Samples PostgreSQL's connections to `database` (pg_stat_activity), but our own."""

    def __init__(self, admin_url: str, database: str, interval_s: float = 0.1) -> None:
        from sqlalchemy import create_engine

        # Autocommit: pg_stat_activity is a snapshot per transaction.
        self.engine = create_engine(
            admin_url,
            connect_args={"application_name": "callx-bench"},
            isolation_level="AUTOCOMMIT",
            pool_size=1,
        )
        self.database = database
        self.interval_s = interval_s
        self.samples: list[tuple[int, int]] = []  # (connections, of which active)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from sqlalchemy import text

        query = text(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity "
            "WHERE datname = :db AND application_name <> 'callx-bench'"
        )
        try:
            with self.engine.connect() as connection:
                while not self._stop.wait(self.interval_s):
                    total, active = connection.execute(query, {"db": self.database}).one()
                    self.samples.append((int(total), int(active)))
        except Exception as exc:  # reported with the figures, not lost in a thread
            self.error = f"{type(exc).__name__}: {exc}"

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.engine.dispose()


# ---- the services --------------------------------------------------------------------------


class Services:
    """PostgreSQL (a fresh, migrated database) and Redis, for a benchmark."""

    def __init__(self) -> None:
        from support.services import PostgresServer, RedisServer

        self.postgres = PostgresServer()
        self.redis = RedisServer()
        self.database = "callx_bench"

    def __enter__(self) -> Services:
        from sqlalchemy import create_engine, text

        from app.db.migrate import upgrade

        self.postgres.start()
        try:
            self.redis.start()
            admin = create_engine(self.postgres.url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f"CREATE DATABASE {self.database}"))
            admin.dispose()
            upgrade(self.database_url)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def database_url(self) -> str:
        return self.postgres.url(self.database)

    def max_connections(self) -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.postgres.url())
        with engine.connect() as connection:
            value = int(connection.execute(text("SHOW max_connections")).scalar_one())
        engine.dispose()
        return value

    def __exit__(self, *_: object) -> None:
        self.redis.cleanup()
        self.postgres.cleanup()


def worker_env(services: Services, data_dir: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {
        "CALLX_DATA_DIR": str(data_dir),
        "CALLX_DATABASE__URL": services.database_url,
        "CALLX_BROKER__URL": services.redis.url,
        "CALLX_EXTRACTION__BACKEND": "openai",
        "CALLX_OPENAI__BASE_URL": base_url,
        "CALLX_OPENAI__MODEL": "stub-model",
        "CALLX_OPENAI__API_KEY": "sk-bench",
        "CALLX_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def start_worker(
    args: list[str],
    env: dict[str, str],
    log_dir: Path,
    name: str,
    timeout: float = 120,
    processes: int = 1,
) -> Any:
    """A `callx worker` subprocess, returned once Celery says each of its `processes` is
    ready."""
    from support.services import CallxProcess, wait_for

    worker = CallxProcess(["worker", *args], env, log_dir, name).start()

    def ready() -> bool:
        assert worker.process is not None
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{worker.log()[-3000:]}")
        return worker.log().count(" ready.") >= processes

    try:
        wait_for(ready, timeout, f"{name} to be ready", interval=0.2)
    except TimeoutError as exc:
        worker.stop()
        raise TimeoutError(f"{exc}\n{worker.log()[-3000:]}") from exc
    return worker


def submit_calls(services: Services, n: int, prefix: str, batch_size: int | None = None) -> None:
    """`n` transcripts through the service path, in batches of `batch_size` (default: one),
    stored and queued (a batch of more than 100 is fanned out by a worker)."""
    from sqlalchemy import create_engine

    from app.config import Settings
    from app.db.session import build_sessionmaker, session_scope
    from app.ingest.parsing import RawRecord
    from app.ingest.service import submit_batch
    from app.jobs.queue import TaskQueue, build_celery
    from schemas.taxonomy import load_taxonomy

    settings = Settings(database={"url": services.database_url}, broker={"url": services.redis.url})
    engine = create_engine(services.database_url, connect_args={"application_name": "callx-bench"})
    celery = build_celery(settings, "callx-bench")
    queue = TaskQueue(celery, settings)
    sessions = build_sessionmaker(engine)
    size = batch_size or n
    for start in range(0, n, size):
        records = [
            RawRecord(
                index=i,
                line=None,
                data={
                    "external_id": f"{prefix}-{i}",
                    "source": "bench",
                    "text": f"Client: ma box {i} est en panne depuis hier soir, rien ne marche. "
                    * 4,
                },
            )
            for i in range(start, min(n, start + size))
        ]
        with session_scope(sessions) as session:
            created = submit_batch(
                session, records, queue, 200_000, taxonomy_version=load_taxonomy().version
            )
        assert created.accepted == len(records), created
    engine.dispose()
    celery.close()


def status_counts(database_url: str) -> dict[str, int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url, connect_args={"application_name": "callx-bench"})
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT status, count(*) FROM transcripts GROUP BY status")
        ).all()
    engine.dispose()
    return {str(status): int(count) for status, count in rows}


def wait_done(database_url: str, n: int, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    state: dict[str, int] = {}
    while time.monotonic() < deadline:
        state = status_counts(database_url)
        if state.get("succeeded", 0) + state.get("failed", 0) >= n:
            return state
        time.sleep(0.25)
    raise TimeoutError(f"{n} calls not done after {timeout}s: {state}")


# ---- the benchmark -------------------------------------------------------------------------


def run(
    quick: bool = False,
    concurrency: int | None = None,
    processes: int | None = None,
    latency_s: float = 1.0,
    batch_size: int = 100,
) -> list[BenchRow]:
    n = 600 if quick else 2000
    concurrency = concurrency or 200
    log_dir = Path(tempfile.mkdtemp(prefix="callx-bench-openai-"))
    with Services() as services, StubProcess(latency_s) as stub:
        max_connections = services.max_connections()
        floor = plain_client_floor(stub, concurrency, rounds=4 if quick else 8)
        # As `callx worker` decides by default.
        processes = processes or default_worker_processes(concurrency, os.cpu_count() or 1)
        worker = start_worker(
            ["--concurrency", str(concurrency), "--processes", str(processes)],
            worker_env(services, log_dir / "data", stub.base_url),
            log_dir,
            "worker",
            processes=processes,
        )
        try:
            stub.reset()
            pids = {
                "worker": worker.process.pid,
                "postgres": _postmaster_pid(services),
                "redis": int(services.redis.pidfile.read_text().strip()),
                "stub": stub.pid,
                "bench": os.getpid(),
            }
            cpu_before = {name: _process_tree_cpu(pid) for name, pid in pids.items()}
            started = time.monotonic()
            with ConnectionSampler(services.postgres.url(), services.database) as sampler:
                submit_calls(services, n, f"inflight-{uuid.uuid4().hex[:6]}", batch_size)
                state = wait_done(services.database_url, n, timeout=60 + 5 * n / concurrency)
            elapsed = time.monotonic() - started
            cpu_by = {
                name: round(_process_tree_cpu(pid) - cpu_before[name], 2)
                for name, pid in pids.items()
            }
            cpu = cpu_by["worker"]
        finally:
            worker.stop()
        events, _, peak = stub.snapshot()
    figures = steady_figures(events)
    ideal = concurrency / latency_s
    ratio_ideal = figures["throughput"] / ideal
    floor_ratio = floor["throughput"] / ideal
    connections = max((total for total, _ in sampler.samples), default=0)
    active = max((act for _, act in sampler.samples), default=0)
    setup = (
        f"{n} calls in batches of {batch_size}, stub latency {latency_s:g}s, worker "
        f"concurrency {concurrency} ({processes} processes)"
    )
    rows = [
        BenchRow(
            name="openai worker: peak calls in flight",
            unit="calls",
            floor=float(floor["peak_in_flight"]),
            callx=float(peak),
            ratio=peak / floor["peak_in_flight"] if floor["peak_in_flight"] else None,
            target=">= 200",
            met=peak >= 200,
            better="higher",
            notes=f"{setup}; floor: plain client of the same concurrency",
            extra={"mean_in_flight_steady": round(figures["mean_in_flight"], 1)},
        ),
        BenchRow(
            name="openai worker: throughput (steady)",
            unit="calls/s",
            floor=round(floor["throughput"], 2),
            callx=round(figures["throughput"], 2),
            ratio=figures["throughput"] / floor["throughput"] if floor["throughput"] else None,
            target=">= 0.9x ideal",
            met=ratio_ideal >= 0.9,
            better="higher",
            notes=f"ideal {ideal:g}/s; callx {ratio_ideal:.2f}x ideal, floor {floor_ratio:.2f}x",
            extra={
                "ideal": ideal,
                "callx_over_ideal": round(ratio_ideal, 3),
                "floor_over_ideal": round(floor_ratio, 3),
                "window_s": round(figures["window_s"], 2),
                "floor": floor,
                "statuses": state,
                "end_to_end_s": round(elapsed, 2),
                "end_to_end_calls_per_s": round(n / elapsed, 1),
                "worker_cpu_s": round(cpu, 2),
                "worker_cpu_ms_per_call": round(1000 * cpu / n, 2),
                "cpu_s_by_process": cpu_by,  # bench: this process (the stub has its own)
                "cpus": os.cpu_count(),
            },
        ),
        BenchRow(
            name="openai worker: PostgreSQL connections (peak)",
            unit="connections",
            floor=None,
            callx=float(connections),
            ratio=None,
            target=f"< max_connections {max_connections}",
            met=connections < max_connections,
            better="lower",
            notes=f"at most {active} active at once (sampled every 0.1 s)"
            + (f"; sampler failed: {sampler.error}" if sampler.error else ""),
            extra={
                "max_active": active,
                "mean": round(statistics.fmean(t for t, _ in sampler.samples), 1)
                if sampler.samples
                else 0,
            },
        ),
    ]
    if state.get("succeeded", 0) != n:
        for row in rows:
            row.met = False
            row.notes += f"; NOT ALL SUCCEEDED: {state}"
    return rows


def _postmaster_pid(services: Services) -> int:
    return int((services.postgres.data / "postmaster.pid").read_text().split()[0])


def _process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="600 calls instead of 2000")
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help="calls per submitted batch (above 100 a worker fans the batch out: its CPU "
        "then goes to sending messages too)",
    )
    parser.add_argument("--latency-s", type=float, default=1.0, help="the stub's answer time")
    args = parser.parse_args()
    rows = run(
        args.quick, args.concurrency, args.processes, args.latency_s, batch_size=args.batch_size
    )
    report(rows, REPORT)


if __name__ == "__main__":
    main()
