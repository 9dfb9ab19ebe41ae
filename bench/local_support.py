"""What the local-model benchmarks share: the calls, the model, the floor, memory figures."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEV_CALLS = ROOT / "data" / "calls" / "dev.jsonl"
REPORTS = ROOT / "reports"
N_THREADS = 2
N_CTX = 4096


@dataclass(frozen=True)
class Call:
    id: str
    transcript: str
    reason: str
    product: str | None


def load_calls(n: int) -> tuple[list[Call], Call]:
    """The first `n` dev calls, and a further one (the last of the file) for warm-ups."""
    rows = [json.loads(line) for line in DEV_CALLS.read_text("utf-8").splitlines() if line.strip()]
    calls = [Call(r["id"], r["transcript"], r["reason"], r.get("product")) for r in rows]
    if n >= len(calls):
        raise ValueError(f"{DEV_CALLS} has {len(calls)} calls: ask for fewer than that")
    return calls[:n], calls[-1]


def model_path() -> Path:
    from app.llm.model_files import default_model_path

    return default_model_path(Path.home() / ".cache" / "callx")


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


class Floor:
    """The forward passes a callx call needs, and nothing else.

    Its own Llama (same model, same threads, same context) whose KV cache holds what callx's
    held: the prompt's first `common` tokens (the prefix callx reused), then only the new prompt
    tokens are evaluated, then the answer's tokens one eval each. No logits read, no sampling.
    """

    def __init__(self, path: Path, n_threads: int = N_THREADS, n_ctx: int = N_CTX) -> None:
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            logits_all=False,
            verbose=False,
        )
        self.last_evaluated_tokens = 0

    def run(
        self,
        prompt: Sequence[int],
        evals: Sequence[Sequence[int]],
        common: int,
        batched: bool = False,
    ) -> None:
        """`evals`: callx's evals for the call, the prompt's new tokens first. The answer's are
        evaluated one token per eval, or as callx batched them (`batched`)."""
        llm = self.llm
        if common and (llm.n_tokens < common or list(llm.input_ids[:common]) != prompt[:common]):
            raise ValueError("the cache does not hold the prefix callx reused")
        if list(prompt[common:]) != list(evals[0]):
            raise ValueError("the first eval is not the prompt's new tokens")
        llm.n_tokens = common
        llm.eval(evals[0])
        for tokens in evals[1:]:
            if batched:
                llm.eval(tokens)
            else:
                for token in tokens:
                    llm.eval([token])
        self.last_evaluated_tokens = sum(len(tokens) for tokens in evals)


def memory_figures() -> dict[str, Any]:
    """This process's memory in MiB: peak RSS, and now Rss split private/shared, anonymous, and
    the GGUF's file mapping (the weights, shared between processes through the page cache)."""
    import resource

    figures: dict[str, Any] = {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    }
    wanted = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")
    try:
        rollup = _kib_fields(Path("/proc/self/smaps_rollup").read_text().splitlines())
    except OSError:
        return figures
    for key in (*wanted, "Anonymous"):
        figures[key.lower() + "_mib"] = rollup.get(key, 0) / 1024
    private = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    figures["private_mib"] = private / 1024
    figures["shared_mib"] = (rollup.get("Shared_Clean", 0) + rollup.get("Shared_Dirty", 0)) / 1024
    figures["gguf_mapping"] = _gguf_mapping()
    return figures


def _kib_fields(lines: list[str]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            fields[parts[0][:-1]] = fields.get(parts[0][:-1], 0) + int(parts[1])
    return fields


def _gguf_mapping() -> dict[str, float]:
    """Rss / shared / private of the mappings of .gguf files, in MiB."""
    totals: dict[str, int] = {}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if "-" in first and not first.endswith(":"):  # a mapping's header line
            inside = line.rstrip().endswith(".gguf")
            continue
        if inside:
            for key, value in _kib_fields([line]).items():
                totals[key] = totals.get(key, 0) + value
    return {
        "rss_mib": totals.get("Rss", 0) / 1024,
        "shared_mib": (totals.get("Shared_Clean", 0) + totals.get("Shared_Dirty", 0)) / 1024,
        "private_mib": (totals.get("Private_Clean", 0) + totals.get("Private_Dirty", 0)) / 1024,
    }
