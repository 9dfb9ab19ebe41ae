"""A worker stopped (SIGTERM) or killed (kill -9) mid-batch: calls left behind, and seconds
until every call is done, with the default lease, grace and reconciler settings.

Real PostgreSQL and Redis. A `callx worker` of the fake backend (prefork, 2 processes, 3 s a
call: a local model's pace) takes a batch of calls (messages of 4 calls); once it is under
way it is stopped with SIGTERM to its main process (as Docker's init sends it), or killed
with SIGKILL to its process group. Left behind: the calls it held that did not go back to the
queue when it went (still `running`, or in a message it had taken and not acknowledged),
counted once it is gone. Then a second worker (0.05 s a call) starts; the clock runs from the
signal to the moment every call is stored, the second worker's start (a few seconds)
included. Targets: SIGTERM, nothing left behind and done within the stop grace; kill -9,
done within a lease and a reconciler interval, plus a call.

    python -m bench.worker_stop [--quick]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import BenchRow, report
from bench.openai_inflight import Services, start_worker, status_counts, submit_calls

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-worker-stop.json"
CALL_S = 3.0


def worker_env(services: Services, data_dir: Path, latency_s: float) -> dict[str, str]:
    """A fake-backend worker with every recovery setting at its default."""
    return {
        "CALLX_DATA_DIR": str(data_dir),
        "CALLX_DATABASE__URL": services.database_url,
        "CALLX_BROKER__URL": services.redis.url,
        "CALLX_EXTRACTION__BACKEND": "fake",
        "CALLX_EXTRACTION__FAKE_LATENCY_S": str(latency_s),
        "CALLX_LOG_LEVEL": "INFO",
    }


def left_behind(services: Services) -> int:
    """Unfinished calls that are running, or in a message some worker took and holds."""
    from sqlalchemy import create_engine

    from app.config import Settings
    from app.db import leases as leases_db
    from app.db.session import build_sessionmaker, session_scope
    from app.jobs.queue import TaskQueue, build_celery

    settings = Settings(database={"url": services.database_url}, broker={"url": services.redis.url})
    celery = build_celery(settings, "callx-bench")
    taken = TaskQueue(celery, settings).taken_messages(time.time() + 60, 10_000)
    celery.close()
    engine = create_engine(services.database_url)
    with session_scope(build_sessionmaker(engine)) as session:
        ids = list({i for message in taken for i in message.transcript_ids})
        states = leases_db.transcript_states(session, ids, datetime.now(UTC))
    engine.dispose()
    in_taken = sum(state == "queued" for state in states.values())
    return in_taken + status_counts(services.database_url).get("running", 0)


def scenario(how: str, n: int, log_dir: Path) -> BenchRow:
    from app.config import BrokerSettings, ExtractionSettings

    with Services() as services:
        import redis

        # A running system's broker: the reconciler does not take it for a fresh, reset one.
        redis.Redis.from_url(services.redis.url).set("callx:broker-marker", "bench")
        logs = log_dir / ("sigterm" if how == "SIGTERM" else "kill9")
        data = logs / "data"
        logs.mkdir(parents=True, exist_ok=True)
        first = start_worker(
            ["--concurrency", "2"], worker_env(services, data, CALL_S), logs, "worker-1"
        )
        second = None
        try:
            submit_calls(services, n, f"stop-{how}", batch_size=n)
            deadline = time.monotonic() + 120
            while status_counts(services.database_url).get("succeeded", 0) < 4:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no progress:\n{first.log()[-3000:]}")
                time.sleep(0.2)
            assert first.process is not None
            signalled = time.monotonic()
            if how == "SIGTERM":
                first.process.send_signal(signal.SIGTERM)
                first.process.wait(120)
            else:
                first.stop(signal.SIGKILL)
            gone_s = time.monotonic() - signalled
            behind = left_behind(services)
            starting = time.monotonic()
            second = start_worker(
                ["--concurrency", "2"], worker_env(services, data, 0.05), logs, "worker-2"
            )
            start_s = time.monotonic() - starting
            while status_counts(services.database_url).get("succeeded", 0) < n:
                if time.monotonic() - signalled > 1200:
                    raise TimeoutError(f"not done:\n{second.log()[-3000:]}")
                time.sleep(0.2)
            done_s = time.monotonic() - signalled
        finally:
            first.stop()
            if second is not None:
                second.stop()
    lease_s = ExtractionSettings().lease_s
    interval_s = BrokerSettings().reconcile_interval_s
    grace_s = ExtractionSettings().stop_grace_s
    if how == "SIGTERM":
        bound = grace_s + CALL_S
        target = f"0 left behind, ≤ stop grace + a call ({bound:g} s)"
        met = behind == 0 and done_s <= bound
    else:
        bound = lease_s + interval_s + CALL_S
        target = f"≤ lease + reconcile interval + a call ({bound:g} s)"
        met = done_s <= bound
    return BenchRow(
        name=f"worker {how} mid-batch: s until every call is done",
        unit="s",
        floor=None,
        callx=round(done_s, 1),
        ratio=None,
        target=target,
        met=met,
        notes=(
            f"{n} calls, {CALL_S:g} s each, 2 processes; left behind {behind}; the worker was "
            f"gone {gone_s:.1f} s after the signal, the second one ready {start_s:.1f} s after "
            f"that; lease {lease_s} s, reconciler every {interval_s:g} s, stop grace "
            f"{grace_s:g} s"
        ),
        extra={
            "left_behind": behind,
            "gone_s": round(gone_s, 1),
            "second_worker_start_s": round(start_s, 1),
            "calls": n,
        },
    )


def run(quick: bool = False) -> list[BenchRow]:
    n = 32 if quick else 64
    log_dir = Path(tempfile.mkdtemp(prefix="callx-bench-stop-"))
    return [scenario("SIGTERM", n, log_dir), scenario("kill -9", n, log_dir)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    report(run(args.quick), REPORT)


if __name__ == "__main__":
    main()
