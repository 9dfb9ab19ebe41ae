"""The OpenAI-compatible stub of bench.openai_inflight, in a process of its own, and the floor:
a plain client of the same concurrency against it, measured the way the worker is."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from support.openai_stub import tool_call_completion

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

