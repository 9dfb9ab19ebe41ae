"""Does the shared rate limit hold, and is it used, with 3 workers sending at once?

Real PostgreSQL and Redis, 3 `callx worker` subprocesses (backend openai) sharing one limit
(CALLX_RATELIMIT__REQUESTS_PER_MINUTE, in the broker's Redis), an OpenAI-compatible stub that
answers at once, and a backlog of calls (far more than the limit lets through). Measured at the
stub, from each request's arrival time:

* the most requests in any window of the limit's length (a sliding, closed interval), against
  the limit scaled to that window: target <= 1.0x;
* the sustained rate after the first window (whose burst is allowed), against the limit:
  target >= 0.9x (the limit is used, not only respected).

Full mode: 600 requests a minute over 60 s windows, 150 s long. Quick mode: the same limit
(10/s) over 5 s windows (CALLX_RATELIMIT__WINDOW_S=5, the burst scaled alike: the same
arithmetic), 15 s long.

    python -m bench.rate_limit [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.common import BenchRow, report
from bench.openai_inflight import (
    Services,
    StubProcess,
    start_worker,
    status_counts,
    submit_calls,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-rate-limit.json"
WORKERS = 3


def most_in_window(times: list[float], window_s: float) -> int:
    """The most arrivals within any closed interval of `window_s`."""
    times = sorted(times)
    most = start = 0
    for end, at in enumerate(times):
        while times[start] < at - window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


class SlotRecorder:
    """Copies the limiter's slot log out of Redis (every 0.5 s, before slots expire from it):
    the schedule the workers were given, in Unix seconds."""

    def __init__(self, redis_url: str, key: str) -> None:
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.key = f"{key}:slots"
        self.slots: dict[bytes, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._copy()

    def _copy(self) -> None:
        for member, score in self.client.zrange(self.key, 0, -1, withscores=True):
            self.slots[member] = score / 1e6

    def __enter__(self) -> SlotRecorder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._copy()


def run(
    quick: bool = False,
    requests_per_minute: int = 600,
    window_s: float | None = None,
    duration_s: float | None = None,
) -> list[BenchRow]:
    window_s = window_s or (5.0 if quick else 60.0)
    duration_s = duration_s or (15.0 if quick else 150.0)
    per_window = int(requests_per_minute * window_s / 60)
    rate = requests_per_minute / 60
    backlog = int(rate * duration_s * 1.5) + per_window + 100
    log_dir = Path(tempfile.mkdtemp(prefix="callx-bench-ratelimit-"))
    from app.llm.rate_limit import default_key

    with Services() as services, StubProcess(0.0) as stub:
        env = worker_env(
            services,
            log_dir / "data",
            stub.base_url,
            CALLX_RATELIMIT__REQUESTS_PER_MINUTE=str(requests_per_minute),
            CALLX_RATELIMIT__WINDOW_S=str(window_s),
            # The default burst (5 s of a 60 s window), scaled to the window like the limit.
            CALLX_RATELIMIT__BURST_S=str(5.0 * window_s / 60),
        )
        workers = []
        try:
            for index in range(WORKERS):
                workers.append(
                    start_worker(
                        ["--concurrency", "20", "--processes", "1", "--name", f"rl{index}@%h"],
                        env,
                        log_dir,
                        f"worker-{index}",
                    )
                )
            stub.reset()
            recorder = SlotRecorder(services.redis.url, default_key(stub.base_url, "stub-model"))
            recorder.__enter__()
            # Unix time - monotonic time, to put the stub's arrivals on the slots' clock.
            offset = time.time() - time.monotonic()
            # Batches of 100: sent one message per call, no fan-out by the workers, so their
            # CPU (2 cores, shared with everything here) goes to calls from the start.
            submit_calls(services, backlog, f"ratelimit-{uuid.uuid4().hex[:6]}", batch_size=100)
            deadline = time.monotonic() + duration_s + 30
            while time.monotonic() < deadline:
                arrivals = stub.snapshot()[1]
                if arrivals and time.monotonic() - arrivals[0] >= duration_s:
                    break
                time.sleep(0.2)
        finally:
            for worker in workers:
                worker.stop()
        recorder.__exit__()
        arrivals = stub.snapshot()[1]
        state = status_counts(services.database_url)
    if not arrivals:
        raise RuntimeError(f"no request reached the stub; worker log:\n{workers[0].log()[-3000:]}")
    first = arrivals[0]
    times = [at for at in arrivals if at - first <= duration_s]
    most = most_in_window(times, window_s)
    # The schedule, over the same span; and how late requests reached the stub after their
    # slot (the k-th arrival against the k-th slot: the gap a margin must cover).
    slots = sorted(recorder.slots.values())
    slots = [at for at in slots if first + offset - 1 <= at <= first + offset + duration_s]
    most_slots = most_in_window(slots, window_s)
    lags = sorted(a + offset - s for a, s in zip(sorted(times), slots, strict=False))
    lag = {
        "p50_ms": round(1000 * statistics.median(lags), 1) if lags else None,
        "p99_ms": round(1000 * lags[int(len(lags) * 0.99)], 1) if lags else None,
        "max_ms": round(1000 * lags[-1], 1) if lags else None,
    }
    steady = [at for at in times if at - first > window_s]
    steady_s = duration_s - window_s
    sustained = len(steady) / steady_s
    per_second = [0] * (int(duration_s) + 1)
    for at in times:
        per_second[int(at - first)] += 1
    setup = (
        f"{WORKERS} workers, limit {requests_per_minute}/min over {window_s:g} s windows "
        f"({per_window} per window), {duration_s:g} s, stub answers at once"
    )
    return [
        BenchRow(
            name=f"rate limit: most slots given in any {window_s:g} s (Redis)",
            unit="requests",
            floor=float(per_window),
            callx=float(most_slots),
            ratio=most_slots / per_window,
            target="<= 1.0x",
            met=most_slots <= per_window,
            better="lower",
            notes=f"the limiter's own schedule, {len(slots)} slots; floor: the limit",
        ),
        BenchRow(
            name=f"rate limit: most requests at the stub in any {window_s:g} s",
            unit="requests",
            floor=float(per_window),
            callx=float(most),
            ratio=most / per_window,
            target="<= 1.0x",
            met=most <= per_window,
            better="lower",
            notes=f"{setup}; arrival after slot: median {lag['p50_ms']} ms, "
            f"p99 {lag['p99_ms']} ms, max {lag['max_ms']} ms; floor: the limit",
            extra={
                "requests_per_minute": requests_per_minute,
                "window_s": window_s,
                "arrival_lag": lag,
            },
        ),
        BenchRow(
            name="rate limit: sustained rate after the first window",
            unit="requests/s",
            floor=round(rate, 3),
            callx=round(sustained, 3),
            ratio=sustained / rate,
            target=">= 0.9x",
            # Holding the limit is the row above (any window); this one is about using it.
            met=sustained / rate >= 0.9,
            better="higher",
            notes=f"{len(steady)} requests in {steady_s:g} s; floor: the limit",
            extra={"per_second": per_second, "statuses_at_end": state, "sent": len(times)},
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s windows, 15 s")
    parser.add_argument("--requests-per-minute", type=int, default=600)
    parser.add_argument("--window-s", type=float, default=None)
    parser.add_argument("--duration-s", type=float, default=None)
    args = parser.parse_args()
    rows = run(args.quick, args.requests_per_minute, args.window_s, args.duration_s)
    report(rows, REPORT)
    print(f"per second: {rows[-1].extra['per_second']}")


if __name__ == "__main__":
    main()
