"""The shared rate limit (app/llm/rate_limit.py) on a real Redis: threads and processes that
share one budget never exceed it in any window, use it (burst, then evenly spaced), count
tokens as well as requests; the openai backend takes it before every request, re-asks
included."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.config import Settings
from app.llm.rate_limit import RateLimiter, default_key
from support.services import CallxProcess, RedisServer, free_port, wait_for

# The backend's imports (instructor, openai) are left to its tests: the processes that
# _process_main runs in import this module, and start faster without them.

pytestmark = pytest.mark.services
# Slots are spaced by the window plus this margin; a thread may wake up late by up to the
# margin (this machine is busy) without any window of the test seeing one call too many.
MARGIN_S = 0.25


def limiter(url: str, key: str, **kwargs: Any) -> RateLimiter:
    return RateLimiter(redis.Redis.from_url(url), key, margin_s=MARGIN_S, **kwargs)


def max_in_window(events: list[tuple[float, int]], window_s: float) -> tuple[int, int]:
    """The most requests and the most tokens sent within any `window_s` (closed) interval."""
    events = sorted(events)
    most_requests = most_tokens = 0
    start = 0
    tokens = 0
    for end, (at, cost) in enumerate(events):
        tokens += cost
        while events[start][0] < at - window_s:
            tokens -= events[start][1]
            start += 1
        most_requests = max(most_requests, end - start + 1)
        most_tokens = max(most_tokens, tokens)
    return most_requests, most_tokens


def run_threads(
    shared: RateLimiter, threads: int, seconds: float, cost: Callable[[], int]
) -> list[tuple[float, int]]:
    """`threads` threads taking slots and 'sending' for `seconds`: [(sent at, tokens)]. As
    acquire() does (reserve, sleep), but a slot past the end is not waited for."""
    sent: list[tuple[float, int]] = []
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def loop() -> None:
        while True:
            tokens = cost()
            wait = shared.reserve(tokens).wait_s
            if time.time() + wait > stop_at:
                return
            time.sleep(wait)
            now = time.time()
            with lock:
                sent.append((now, tokens))

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    return sent


def _process_main(url: str, key: str, seconds: float, queue: Any) -> None:
    """One of several processes: 3 threads calling acquire() for `seconds`; puts
    (its pid, [(sent at, 0)]) on the queue."""
    shared = limiter(url, key, requests_per_minute=300, tokens_per_minute=None, window_s=2.0)
    sent: list[tuple[float, int]] = []
    stop_at = time.time() + seconds

    def loop() -> None:
        while True:
            shared.acquire()
            now = time.time()
            if now > stop_at:
                return
            sent.append((now, 0))

    workers = [threading.Thread(target=loop) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    queue.put((os.getpid(), sent))


def test_threads_burst_then_evenly_spaced(redis_server: RedisServer) -> None:
    # 60 a minute, a 5 s burst: 5 at once, then one a second.
    shared = limiter(
        redis_server.url, f"test:{uuid.uuid4()}", requests_per_minute=60, tokens_per_minute=None
    )
    sent = run_threads(shared, 8, 4.5, lambda: 0)
    times = sorted(at for at, _ in sent)
    start = times[0]
    assert len(times) == 9, [round(t - start, 2) for t in times]  # 5 + at 1, 2, 3, 4 s
    assert times[4] - start < 0.5  # the burst
    gaps = [b - a for a, b in zip(times[4:], times[5:], strict=False)]
    assert all(0.9 < gap < 1.3 for gap in gaps), gaps  # then one a second


def test_processes_sharing_a_budget_never_exceed_it_in_any_window(
    redis_server: RedisServer,
) -> None:
    # 300 a minute over 2 s windows: 10 per window, for 3 processes x 3 threads, 7 s long.
    key = f"test:{uuid.uuid4()}"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    seconds = 7.0
    processes = [
        context.Process(target=_process_main, args=(redis_server.url, key, seconds, queue))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    reports = dict(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(30)
    # Every process reported, once: no call is missed or counted twice. (Two processes may
    # well send within the same microsecond, so times cannot tell calls apart.)
    assert sorted(reports) == sorted(p.pid for p in processes)
    sent = [event for events in reports.values() for event in events]
    most, _ = max_in_window(sent, 2.0)
    print(f"3 processes x 3 threads: {len(sent)} calls, at most {most} in any 2 s (limit 10)")
    assert most <= 10, most
    # And the budget is used: the processes start a little apart (imports), so count from the
    # first call: a full window's 10 at once, then 10 per (2 s + margin).
    first = min(at for at, _ in sent)
    elapsed = max(at for at, _ in sent) - first
    expected = 10 * (1 + int(elapsed / (2.0 + MARGIN_S)))
    assert len(sent) >= 0.9 * expected, (len(sent), expected)


def test_tokens_per_minute_hold_in_any_window(redis_server: RedisServer) -> None:
    # 6000 tokens a minute over 2 s windows: 200 tokens per window, requests of 20 to 70.
    shared = limiter(
        redis_server.url,
        f"test:{uuid.uuid4()}",
        requests_per_minute=None,
        tokens_per_minute=6000,
        window_s=2.0,
        burst_s=1.0,
    )
    rng = random.Random(7)
    sent = run_threads(shared, 6, 6.5, lambda: rng.randint(20, 70))
    _, most_tokens = max_in_window(sent, 2.0)
    total = sum(cost for _, cost in sent)
    print(f"tokens: {total} in 6.5 s, at most {most_tokens} in any 2 s (limit 200)")
    assert most_tokens <= 200, most_tokens
    # Used, not only respected: at least 0.75 of 200 per (2 s + margin), after the first 2 s
    # window (whole requests do not fill a window exactly).
    assert total >= 0.75 * 200 * (6.5 / (2.0 + MARGIN_S)), total


def test_requests_and_tokens_together_and_a_request_too_big_goes_alone(
    redis_server: RedisServer,
) -> None:
    shared = limiter(
        redis_server.url,
        f"test:{uuid.uuid4()}",
        requests_per_minute=120,  # 4 per 2 s
        tokens_per_minute=3000,  # 100 per 2 s
        window_s=2.0,
        burst_s=2.0,
    )
    first = [shared.reserve(10) for _ in range(4)]
    assert [r.wait_s for r in first] == [0.0] * 4
    fifth = shared.reserve(10)  # the requests limit binds: after the first slot leaves
    assert 2.0 + MARGIN_S - 0.1 <= fifth.wait_s <= 2.0 + MARGIN_S + 0.1
    big = shared.reserve(500)  # more than a window's tokens: alone, once the window is empty
    assert big.wait_s >= fifth.wait_s + 2.0
    after = shared.reserve(10)
    assert after.wait_s >= big.wait_s + 2.0


def test_without_redis_calls_go_ahead(caplog: pytest.LogCaptureFixture) -> None:
    gone = RateLimiter(
        redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)),
        "test:gone",
        requests_per_minute=1,
        tokens_per_minute=None,
    )
    assert gone.acquire() == 0.0
    assert gone.acquire() == 0.0
    assert sum("rate limiter unavailable" in r.getMessage() for r in caplog.records) == 1


def test_settings_build_a_limiter_per_endpoint_and_model(redis_server: RedisServer) -> None:
    settings = Settings(broker={"url": redis_server.url}, ratelimit={"requests_per_minute": 600})
    built = RateLimiter.from_settings(settings, base_url="http://llm/v1", model="m")
    assert built is not None and built.max_requests == 600 and built.max_tokens == 0
    assert built.key == default_key("http://llm/v1/", "m") != default_key("http://llm/v1", "n")
    assert RateLimiter.from_settings(Settings(), base_url="http://llm/v1", model="m") is None
    with pytest.raises(ValueError, match="needs Redis"):
        RateLimiter.from_settings(
            Settings(ratelimit={"tokens_per_minute": 1000}), base_url="x", model="m"
        )


class Recorder:
    counts_tokens = True

    def __init__(self) -> None:
        self.calls: list[int] = []

    def acquire(self, tokens: int = 0) -> float:
        self.calls.append(tokens)
        return 0.0


def test_the_backend_takes_the_limit_before_every_request_reasks_included() -> None:
    from app.extraction.pipeline import extract
    from app.llm.openai_compat import OpenAICompatBackend
    from schemas.taxonomy import load_taxonomy
    from support.openai_stub import OpenAIStub, Reply, tool_call_reply

    def script(_: dict, number: int) -> Reply:
        # First an answer that does not validate (instructor re-asks), then a good one.
        bad = {"product": "Livebox", "reason": "not-a-code"}
        return tool_call_reply(bad if number == 1 else {"product": "Livebox", "reason": "billing"})

    recorder = Recorder()
    with OpenAIStub(script) as stub:
        backend = OpenAICompatBackend(
            base_url=stub.base_url,
            api_key="sk-test",
            model="stub-model",
            max_answer_tokens=200,
            rate_limiter=recorder,  # type: ignore[arg-type]
        )
        outcome = extract(
            "Client: ma facture est fausse", backend=backend, taxonomy=load_taxonomy()
        )
    assert outcome.status == "succeeded" and outcome.attempts == 2
    assert len(recorder.calls) == len(stub.requests) == 2
    # The estimate: the prompt (and schema) plus max_tokens; the re-ask carries more.
    assert recorder.calls[0] > 200 and recorder.calls[1] > recorder.calls[0]
    sent = stub.requests[0]
    assert recorder.calls[0] == backend.estimate_request_tokens(sent)


def test_the_backend_with_a_real_limiter_spaces_its_requests(redis_server: RedisServer) -> None:
    from app.extraction.pipeline import extract
    from app.llm.openai_compat import OpenAICompatBackend
    from schemas.taxonomy import load_taxonomy
    from support.openai_stub import OpenAIStub, tool_call_reply

    shared = limiter(
        redis_server.url,
        f"test:{uuid.uuid4()}",
        requests_per_minute=120,
        tokens_per_minute=None,
        burst_s=0,
    )
    with OpenAIStub(lambda *_: tool_call_reply({"product": None, "reason": "billing"})) as stub:
        backend = OpenAICompatBackend(
            base_url=stub.base_url, api_key="sk-test", model="stub-model", rate_limiter=shared
        )
        outcomes = [
            extract("Client: facture", backend=backend, taxonomy=load_taxonomy()) for _ in range(3)
        ]
    assert all(o.status == "succeeded" for o in outcomes)
    gaps = [b - a for a, b in zip(stub.times, stub.times[1:], strict=False)]
    assert all(gap >= 0.45 for gap in gaps), gaps  # 120 a minute, no burst: one per 0.5 s


def test_workers_on_several_hosts_share_the_limit(
    settings: Settings,
    clean_db: None,
    clean_broker: None,
    start_callx: Callable[..., CallxProcess],
) -> None:
    """Two `callx worker`s, one of them two processes (the threads split between them), on
    the openai backend: 16 calls at 120 a minute over 2 s windows go 4 per window, in all."""
    from sqlalchemy import create_engine, text

    from app.db.session import build_engine, build_sessionmaker, session_scope
    from app.ingest.parsing import RawRecord
    from app.ingest.service import submit_batch
    from app.jobs.queue import TaskQueue, build_celery
    from schemas.taxonomy import load_taxonomy
    from support.env import process_env
    from support.openai_stub import OpenAIStub, tool_call_reply

    with OpenAIStub(
        lambda *_: tool_call_reply({"product": "Livebox", "reason": "billing"})
    ) as stub:
        env = process_env(
            settings,
            CALLX_EXTRACTION__BACKEND="openai",
            CALLX_OPENAI__BASE_URL=stub.base_url,
            CALLX_OPENAI__MODEL="stub-model",
            CALLX_RATELIMIT__REQUESTS_PER_MINUTE="120",
            CALLX_RATELIMIT__WINDOW_S="2",
            CALLX_RATELIMIT__MARGIN_S="0.5",
        )
        multi = start_callx(["worker", "--concurrency", "4", "--processes", "2"], env, "multi")
        start_callx(["worker", "--concurrency", "2", "--processes", "1"], env, "single")
        engine = build_engine(settings)
        celery = build_celery(settings)
        records = [
            RawRecord(index=i, line=None, data={"text": f"Client: ma facture {i} est fausse"})
            for i in range(16)
        ]
        with session_scope(build_sessionmaker(engine)) as session:
            submit_batch(
                session,
                records,
                TaskQueue(celery, settings),
                10_000,
                taxonomy_version=load_taxonomy().version,
            )
        celery.close()
        engine.dispose()

        check = create_engine(settings.database_url)

        def succeeded() -> int:
            with check.connect() as connection:
                return int(
                    connection.execute(
                        text("SELECT count(*) FROM transcripts WHERE status = 'succeeded'")
                    ).scalar_one()
                )

        wait_for(lambda: succeeded() == 16, 120, "16 calls extracted", interval=0.5)
        check.dispose()
        times = list(stub.times)

    assert len(times) == 16
    most, _ = max_in_window([(at, 0) for at in times], 2.0)
    span = max(times) - min(times)
    print(f"2 workers (3 processes): 16 calls in {span:.1f} s, at most {most} in any 2 s")
    assert most <= 4, most
    assert span >= 3 * 2.5 - 0.3  # 4 windows of 2 s + margin: the last starts at 7.5 s

    # The two processes of `multi` run under it; a SIGTERM to it alone stops them all.
    assert "2 worker processes, 4 threads in all" in multi.log()
    assert multi.process is not None
    children = Path(f"/proc/{multi.process.pid}/task/{multi.process.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()]
    assert len(pids) == 2
    multi.process.send_signal(signal.SIGTERM)
    assert multi.process.wait(timeout=60) == 0
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 10, "children")
