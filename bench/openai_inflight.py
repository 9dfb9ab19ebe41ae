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
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.cli.service import default_worker_processes
from bench.common import BenchRow, report
from tests.openai_stub import tool_call_completion

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-openai.json"
GOOD_ANSWER = {"product": "Livebox 6", "reason": "breakdown"}


# ---- the stub ------------------------------------------------------------------------------


class AsyncOpenAIStub:
    """An OpenAI-compatible endpoint on one asyncio loop (in a thread): every POST is answered
    after `delay_s`, with keep-alive. Thousands of concurrent connections for little CPU, so
    the stub is not what a benchmark measures. Each request's (arrival, departure) time, in
    time.monotonic(), is kept in `events`; `peak` is the most requests in flight at once."""

    def __init__(self, delay_s: float, answer: dict[str, Any] | None = None) -> None:
        self.delay_s = delay_s
        self.body = json.dumps(tool_call_completion(answer or GOOD_ANSWER)).encode()
        self.events: list[tuple[float, float]] = []
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.peak = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openai-stub", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        """Forget what was measured (between two phases of a benchmark)."""

        def clear() -> None:
            self.events, self.arrivals, self.peak = [], [], self.in_flight

        self._call(clear)

    def snapshot(self) -> tuple[list[tuple[float, float]], list[float], int]:
        result: list[Any] = []
        self._call(lambda: result.append((list(self.events), list(self.arrivals), self.peak)))
        return result[0]

    def _call(self, function: Callable[[], None]) -> None:
        done = threading.Event()

        def run() -> None:
            function()
            done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def __enter__(self) -> AsyncOpenAIStub:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the stub did not start")
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", 0, backlog=4096, limit=1 << 20
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._started.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, close = 0, False
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip())
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                if length:
                    await reader.readexactly(length)
                arrival = time.monotonic()
                self.arrivals.append(arrival)
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                try:
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: " + str(len(self.body)).encode() + b"\r\n\r\n" + self.body
                    )
                    await writer.drain()
                finally:
                    self.in_flight -= 1
                self.events.append((arrival, time.monotonic()))
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


def _serve_stub(delay_s: float, connection: Any) -> None:
    """The stub in a process of its own: commands over `connection`."""
    try:
        # It stands for a remote server, which a busy machine does not slow down: where
        # allowed, ahead of other processes for the CPU, so its timestamps stay true.
        os.nice(-10)
    except OSError:
        pass
    with AsyncOpenAIStub(delay_s) as stub:
        connection.send(stub.port)
        while True:
            command = connection.recv()
            if command == "reset":
                stub.reset()
                connection.send(None)
            elif command == "snapshot":
                connection.send(stub.snapshot())
            else:
                return


class StubProcess:
    """AsyncOpenAIStub in its own process: its timestamps do not wait for this process's GIL
    (the benchmark's own clients and bookkeeping). Same interface; times are
    time.monotonic(), the same clock in every process of the machine."""

    def __init__(self, delay_s: float) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve_stub, args=(delay_s, child), daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def __enter__(self) -> StubProcess:
        self._process.start()
        if not self._connection.poll(60):
            raise RuntimeError("the stub process did not start")
        self.port = self._connection.recv()
        return self

    def reset(self) -> None:
        self._connection.send("reset")
        self._connection.recv()

    def snapshot(self) -> tuple[list[tuple[float, float]], list[float], int]:
        self._connection.send("snapshot")
        return self._connection.recv()

    def __exit__(self, *_: object) -> None:
        try:
            self._connection.send("stop")
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


# ---- measuring -----------------------------------------------------------------------------


def steady_figures(events: list[tuple[float, float]]) -> dict[str, float]:
    """Throughput and mean in-flight over the steady window: from the 10th to the 90th
    percentile of completion times (ramp-up and drain left out)."""
    if len(events) < 20:
        return {"throughput": 0.0, "mean_in_flight": 0.0, "window_s": 0.0, "completed": 0}
    ends = sorted(end for _, end in events)
    start, stop = ends[len(ends) // 10], ends[(len(ends) * 9) // 10]
    window = max(stop - start, 1e-9)
    completed = sum(1 for end in ends if start < end <= stop)
    # Time integral of the in-flight count over [start, stop]: each request's overlap.
    busy = sum(max(0.0, min(b, stop) - max(a, start)) for a, b in events)
    return {
        "throughput": completed / window,
        "mean_in_flight": busy / window,
        "window_s": window,
        "completed": completed,
    }


def peak_in_flight(events: list[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in events] + [(b, -1) for _, b in events])
    level = peak = 0
    for _, step in points:
        level += step
        peak = max(peak, level)
    return peak


def plain_client_floor(stub: StubProcess, concurrency: int, rounds: int) -> dict:
    """The stub's capacity: `concurrency` threads each posting `rounds` chat requests, one
    after the other (httpx, keep-alive), as fast as the stub answers."""
    import httpx

    payload = {
        "model": "stub-model",
        "messages": [{"role": "user", "content": "Client: ma box est en panne " * 20}],
    }
    errors: list[str] = []
    go = threading.Barrier(concurrency + 1)

    def client() -> None:
        with httpx.Client(base_url=stub.base_url, timeout=60) as http:
            go.wait()
            for _ in range(rounds):
                try:
                    http.post("/chat/completions", json=payload).raise_for_status()
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    stub.reset()
    go.wait()
    for thread in threads:
        thread.join(600)
    events, _, peak = stub.snapshot()
    # Its requests go in waves (all start together): counted over the whole run, first start
    # to last end, not between percentiles that fall inside a wave.
    span = max(end for _, end in events) - min(start for start, _ in events) if events else 0
    return {
        "throughput": len(events) / span if span else 0.0,
        "mean_in_flight": sum(end - start for start, end in events) / span if span else 0.0,
        "window_s": span,
        "completed": len(events),
        "peak_in_flight": peak,
        "errors": len(errors),
    }


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
        from tests.services import PostgresServer, RedisServer

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
    from tests.services import CallxProcess, wait_for

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
    from app.queue import TaskQueue, build_celery

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
            created = submit_batch(session, records, queue, 200_000)
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
