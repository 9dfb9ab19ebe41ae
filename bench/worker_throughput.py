"""Calls per minute of one worker host (2 cores) running the local model: which split of the two
cores is best, one process with 2 threads or 2 processes with 1 thread each, and the memory each
process holds (peak RSS; private vs shared, the weights being a memory map of the GGUF).

Each process is started with the spawn context and builds its own LlamaCppBackend (its own Llama
on the same GGUF), is warmed up on a call outside the measured set, then all processes pull the
same calls from one queue; the clock runs from the moment all are ready to the last answer. All
processes are pinned to two CPUs (where the machine has more) so the figures are a 2-core host's.
The splits alternate (1x2, 2x1, 1x2, ...) to cancel the machine's drift; each one's best is kept.

    .venv/bin/python -m bench.worker_throughput            # 30 calls, each split twice
    .venv/bin/python -m bench.worker_throughput --quick    # 6 calls, each split once
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchRow, report
from bench.local_support import N_CTX, REPORTS, Call, load_calls, mean, memory_figures, model_path

HOST_CORES = 2
SPLITS = ((1, 2), (2, 1))  # (processes, threads per process)


def _host_cpus() -> set[int] | None:
    """The two CPUs the benchmark's processes run on (None where affinity is not available)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return set(cpus[:HOST_CORES])


def _worker(
    threads: int,
    calls: list[Call],
    warm: Call,
    cpus: set[int] | None,
    jobs: Any,
    results: Any,
    ready: Any,
    done: Any,
    measured: Any,
) -> None:
    """One worker process: its own backend, warm-up, then calls from `jobs` until None."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    from app.extraction.pipeline import extract
    from app.llm.llamacpp import LlamaCppBackend
    from schemas.extraction import answer_model
    from schemas.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    model = answer_model(taxonomy)
    backend = LlamaCppBackend(model_path(), n_ctx=N_CTX, n_threads=threads)
    extract(warm.transcript, backend=backend, taxonomy=taxonomy)
    ready.wait()
    answers: dict[int, dict[str, Any]] = {}
    while (index := jobs.get()) is not None:
        started = time.perf_counter()
        outcome = extract(calls[index].transcript, backend=backend, taxonomy=taxonomy)
        try:
            valid = outcome.succeeded and model.model_validate_json(outcome.raw_answer or "")
        except ValueError:
            valid = False
        answers[index] = {
            "s": time.perf_counter() - started,
            "product": outcome.product,
            "reason": outcome.reason,
            "valid": bool(valid),
            "evaluated_tokens": backend.last_evaluated_tokens,
        }
    done.wait()  # every process still holds its model: the mapping's sharing is visible
    results.put({"pid": os.getpid(), "answers": answers, "memory": memory_figures()})
    measured.wait()


@dataclass
class SplitRun:
    processes: int
    threads: int
    seconds: float
    per_process: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.processes}x{self.threads}"

    def calls_per_minute(self, n: int) -> float:
        return n / self.seconds * 60

    def answers(self) -> dict[int, dict[str, Any]]:
        return {i: a for p in self.per_process for i, a in p["answers"].items()}


def run_split(processes: int, threads: int, calls: list[Call], warm: Call) -> SplitRun:
    ctx = mp.get_context("spawn")
    jobs, results = ctx.Queue(), ctx.Queue()
    ready, done, measured = (ctx.Barrier(processes + 1) for _ in range(3))
    cpus = _host_cpus()
    children = [
        ctx.Process(
            target=_worker,
            args=(threads, calls, warm, cpus, jobs, results, ready, done, measured),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    try:
        ready.wait(timeout=600)
        started = time.perf_counter()
        for index in range(len(calls)):
            jobs.put(index)
        for _ in children:
            jobs.put(None)
        done.wait(timeout=3600)  # every call answered
        seconds = time.perf_counter() - started
        per_process = [results.get(timeout=600) for _ in children]
        measured.wait(timeout=600)
    except (queue.Empty, threading.BrokenBarrierError) as exc:
        raise RuntimeError(f"the {processes}x{threads} split failed: a worker died") from exc
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.terminate()
    return SplitRun(processes, threads, seconds, per_process)


def measure(calls: list[Call], warm: Call, rounds: int) -> dict[str, list[SplitRun]]:
    runs: dict[str, list[SplitRun]] = {}
    for _ in range(rounds):
        for processes, threads in SPLITS:
            split = run_split(processes, threads, calls, warm)
            runs.setdefault(split.label, []).append(split)
    return runs


def _memory_summary(split: SplitRun) -> dict[str, Any]:
    keys = ("peak_rss_mib", "rss_mib", "private_mib", "shared_mib", "anonymous_mib", "pss_mib")
    memory = [p["memory"] for p in split.per_process]
    summary: dict[str, Any] = {key: round(max(m.get(key, 0.0) for m in memory), 1) for key in keys}
    summary["gguf_mapping_mib"] = {
        key: round(max(m.get("gguf_mapping", {}).get(key, 0.0) for m in memory), 1)
        for key in ("rss_mib", "shared_mib", "private_mib")
    }
    summary["per_process"] = memory
    return summary


def rows_from(runs: dict[str, list[SplitRun]], calls: list[Call]) -> list[BenchRow]:
    n = len(calls)
    best = {
        label: max(r.calls_per_minute(n) for r in split_runs) for label, split_runs in runs.items()
    }
    one, two = (f"{p}x{t}" for p, t in SPLITS)
    winner = max(best, key=lambda label: best[label])
    loser = two if winner == one else one
    fastest = {
        label: max(split_runs, key=lambda r: r.calls_per_minute(n))
        for label, split_runs in runs.items()
    }
    invalid = sum(not a["valid"] for r in fastest.values() for a in r.answers().values())
    reference = fastest[one].answers()
    differing = sum(
        (a["product"], a["reason"]) != (reference[i]["product"], reference[i]["reason"])
        for i, a in fastest[two].answers().items()
    )
    rows = [
        BenchRow(
            name=f"worker calls/min, best split ({winner}) vs {loser}",
            unit="calls/min",
            floor=best[loser],
            callx=best[winner],
            ratio=best[winner] / best[loser],
            target="report",
            met=None,
            better="higher",
            notes=f"{n} dev calls on {HOST_CORES} pinned cores, processes x threads, best of "
            f"{len(runs[one])}; floor column = the other split; invalid answers: {invalid}; "
            f"answers differing between splits: {differing}",
            extra={
                label: [round(r.calls_per_minute(n), 2) for r in split_runs]
                for label, split_runs in runs.items()
            },
        )
    ]
    for label in (one, two):
        run = fastest[label]
        latencies = [a["s"] for a in run.answers().values()]
        memory = _memory_summary(run)
        rows.append(
            BenchRow(
                name=f"worker {label}: calls/min",
                unit="calls/min",
                floor=None,
                callx=best[label],
                ratio=None,
                target="report",
                met=None,
                better="higher",
                notes=f"mean latency {mean(latencies):.2f} s/call",
                extra={"latency_mean_s": mean(latencies)},
            )
        )
        gguf = memory["gguf_mapping_mib"]
        rows.append(
            BenchRow(
                name=f"worker {label}: peak RSS per process",
                unit="MiB",
                floor=None,
                callx=memory["peak_rss_mib"],
                ratio=None,
                target="report",
                met=None,
                notes=f"now: private {memory['private_mib']:.0f} MiB, shared "
                f"{memory['shared_mib']:.0f} MiB (GGUF map: rss {gguf['rss_mib']:.0f}, shared "
                f"{gguf['shared_mib']:.0f}, private {gguf['private_mib']:.0f}); max over "
                f"{run.processes} process(es)",
                extra=memory,
            )
        )
    return rows


def run(quick: bool) -> list[BenchRow]:
    calls, warm = load_calls(6 if quick else 30)
    return rows_from(measure(calls, warm, 1 if quick else 2), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 calls, each split once")
    parser.add_argument("--output", type=Path, default=REPORTS / "bench-worker-throughput.json")
    args = parser.parse_args()
    rows = run(args.quick)
    report(rows, args.output)


if __name__ == "__main__":
    main()
