"""The local backend (Gemma 3 270M in llama.cpp) against its floor and against the usual peer.

* floor: the llama.cpp forward passes a call needs, measured directly (bench.local_support.Floor):
  the prompt's tokens that are new after prefix reuse, then the answer's tokens callx produced
  for that call, one eval per token; same model, threads and context, no sampling.
* callx: app.extraction.pipeline.extract with the LlamaCppBackend (forced JSON skeleton, greedy
  product, reason chosen among the codes, prefix reused between calls).
* peer: what people do today, llama-cpp-python's create_chat_completion with a JSON-schema
  `response_format` (grammar-constrained sampling), same model, prompt text and taxonomy; its
  answers validated with the same pydantic model.

Each method has its own Llama and is warmed up once on a call outside the measured set; the
methods are interleaved call by call (floor, callx, peer) to cancel the machine's drift, and
each call is repeated (2 quick, 3 full) from the same KV cache, keeping each method's fastest
repeat: on a shared machine noise only ever adds time.

    .venv/bin/python -m bench.local_model            # 30 calls x 3
    .venv/bin/python -m bench.local_model --quick    # 6 calls x 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.evaluation.metrics import product_matches
from app.extraction.pipeline import extract
from app.llm.llamacpp import LlamaCppBackend
from app.llm.prompts import user_message
from bench.common import BenchRow, report
from bench.local_support import N_CTX, N_THREADS, REPORTS, Call, Floor, load_calls, mean, model_path
from schemas.extraction import CallExtractionBase, answer_model
from schemas.taxonomy import Taxonomy, load_taxonomy

CALLX_TARGET = 1.25  # callx s/call <= 1.25 x floor
PEER_TARGET = 0.5  # callx s/call <= 0.5 x peer


class Peer:
    """Grammar-constrained JSON with llama-cpp-python's own chat completion."""

    def __init__(self, path: Path, taxonomy: Taxonomy) -> None:
        from llama_cpp import Llama

        self.taxonomy = taxonomy
        self.model = answer_model(taxonomy)
        self.schema = self.model.model_json_schema()
        self.llm = Llama(
            model_path=str(path),
            n_ctx=N_CTX,
            n_threads=N_THREADS,
            n_threads_batch=N_THREADS,
            chat_format="gemma",
            verbose=False,
        )

    def ask(self, transcript: str) -> tuple[str, int]:
        """The raw answer and the number of tokens generated."""
        out = self.llm.create_chat_completion(
            messages=[{"role": "user", "content": user_message(self.taxonomy, transcript)}],
            response_format={"type": "json_object", "schema": self.schema},
            temperature=0,
            max_tokens=64,
        )
        return out["choices"][0]["message"]["content"] or "", out["usage"]["completion_tokens"]


@dataclass
class Trace:
    """What callx evaluated for one call: the prompt, and each eval's tokens in order."""

    prompt: list[int]
    evals: list[list[int]]
    product: str | None
    reason: str

    @property
    def answer_tokens(self) -> list[int]:
        return [token for tokens in self.evals[1:] for token in tokens]


@dataclass
class Result:
    call: Call
    # seconds of each repeat
    floor_s: list[float] = field(default_factory=list)
    floor_batched_s: list[float] = field(default_factory=list)
    callx_s: list[float] = field(default_factory=list)
    peer_s: list[float] = field(default_factory=list)
    floor_tokens: int = 0
    callx_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    callx: CallExtractionBase | None = None
    callx_raw: str | None = None
    callx_same_as_trace: bool = True
    peer: CallExtractionBase | None = None
    peer_raw: str = ""
    peer_generated: int = 0


def _callx(backend: LlamaCppBackend, taxonomy: Taxonomy, call: Call) -> tuple[Any, float]:
    started = time.perf_counter()
    outcome = extract(call.transcript, backend=backend, taxonomy=taxonomy)
    elapsed = time.perf_counter() - started
    if not outcome.succeeded:
        raise RuntimeError(f"callx failed on {call.id}: {outcome.error}")
    if outcome.truncated:
        raise RuntimeError(f"{call.id} was truncated: the floor would not match, raise n_ctx")
    return outcome, elapsed


def _trace(backend: LlamaCppBackend, taxonomy: Taxonomy, call: Call) -> Trace:
    """Run callx once, recording every eval (untimed): the floor replays these tokens."""
    evals: list[list[int]] = []
    original = backend._eval

    def recording(tokens: list[int]) -> Any:
        evals.append(list(tokens))
        return original(tokens)

    backend._eval = recording  # type: ignore[method-assign]
    try:
        outcome, _ = _callx(backend, taxonomy, call)
    finally:
        del backend._eval
    prompt = backend.tokens.prompt(taxonomy, call.transcript)
    if prompt[len(prompt) - len(evals[0]) :] != evals[0]:
        raise RuntimeError(f"{call.id}: the first eval is not the end of the prompt")
    return Trace(prompt, evals, outcome.product, outcome.reason)


def _validate(model: type[CallExtractionBase], raw: str) -> CallExtractionBase | None:
    try:
        return model.model_validate_json(raw)
    except (ValidationError, ValueError):
        return None


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure(calls: list[Call], warm: Call, taxonomy: Taxonomy, repeats: int) -> list[Result]:
    """Each call `repeats` times per method, interleaved; each repeat from the same KV cache
    (the previous call's, truncated back to the prefix reused); the fastest repeat is kept."""
    path = model_path()
    model = answer_model(taxonomy)
    backend = LlamaCppBackend(path, n_ctx=N_CTX, n_threads=N_THREADS)
    floor = Floor(path)
    peer = Peer(path, taxonomy)

    # Untimed: callx's own tokens for each call (the floor needs them before callx runs).
    traces = {call.id: _trace(backend, taxonomy, call) for call in [warm, *calls]}
    # Warm-up: every method once on the same extra call, so that all caches hold it.
    _callx(backend, taxonomy, warm)
    floor.run(traces[warm.id].prompt, traces[warm.id].evals, 0)
    peer.ask(warm.transcript)

    results = []
    for call in calls:
        trace, result = traces[call.id], Result(call)
        result.prompt_tokens = len(trace.prompt)
        common = len(trace.prompt) - len(trace.evals[0])
        peer_before = list(peer.llm.input_ids[: peer.llm.n_tokens])
        peer_common = 0
        for repeat in range(repeats):
            started = time.perf_counter()
            floor.run(trace.prompt, trace.evals, common)
            result.floor_s.append(time.perf_counter() - started)
            result.floor_tokens = len(trace.prompt) - common + len(trace.answer_tokens)

            # The same evals batched as callx does (its forced runs of tokens in one eval).
            started = time.perf_counter()
            floor.run(trace.prompt, trace.evals, common, batched=True)
            result.floor_batched_s.append(time.perf_counter() - started)

            if repeat:
                backend._llm.n_tokens = common  # back to the previous call's cache
            outcome, elapsed = _callx(backend, taxonomy, call)
            result.callx_s.append(elapsed)
            result.callx_tokens.append(backend.last_evaluated_tokens)
            result.callx_raw = outcome.raw_answer
            result.callx = _validate(model, outcome.raw_answer or "")
            same = (outcome.product, outcome.reason) == (trace.product, trace.reason)
            result.callx_same_as_trace = result.callx_same_as_trace and same

            if repeat:
                peer.llm.n_tokens = peer_common
            started = time.perf_counter()
            result.peer_raw, result.peer_generated = peer.ask(call.transcript)
            result.peer_s.append(time.perf_counter() - started)
            result.peer = _validate(model, result.peer_raw)
            if not repeat:
                peer_common = _common_prefix(
                    peer_before, list(peer.llm.input_ids[: peer.llm.n_tokens])
                )
        results.append(result)
    return results


def _accuracy(results: list[Result], who: str, what: str) -> float:
    hits = []
    for r in results:
        answer: CallExtractionBase | None = getattr(r, who)
        if answer is None:
            hits.append(False)
        elif what == "reason":
            hits.append(answer.reason == r.call.reason)
        else:
            hits.append(product_matches(answer.product, r.call.product))
    return sum(hits) / len(hits)


def rows_from(results: list[Result], repeats: int) -> list[BenchRow]:
    n = len(results)
    floor_s = mean([min(r.floor_s) for r in results])
    floor_batched_s = mean([min(r.floor_batched_s) for r in results])
    callx_s = mean([min(r.callx_s) for r in results])
    peer_s = mean([min(r.peer_s) for r in results])
    per_call = [
        {
            "id": r.call.id,
            "floor_s": [round(t, 4) for t in r.floor_s],
            "floor_batched_s": [round(t, 4) for t in r.floor_batched_s],
            "callx_s": [round(t, 4) for t in r.callx_s],
            "peer_s": [round(t, 4) for t in r.peer_s],
            "prompt_tokens": r.prompt_tokens,
            "evaluated_tokens": r.callx_tokens,
            "floor_tokens": r.floor_tokens,
            "callx": r.callx_raw,
            "peer": r.peer_raw,
            "peer_generated_tokens": r.peer_generated,
            "expected": {"product": r.call.product, "reason": r.call.reason},
        }
        for r in results
    ]
    spread = {
        "every_repeat_mean_s": {
            "floor": mean([t for r in results for t in r.floor_s]),
            "callx": mean([t for r in results for t in r.callx_s]),
            "peer": mean([t for r in results for t in r.peer_s]),
        },
        "per_call_ratio_median": statistics.median(
            min(r.callx_s) / min(r.floor_s) for r in results
        ),
    }
    callx_invalid = sum(r.callx is None for r in results)
    peer_invalid = sum(r.peer is None for r in results)
    drift = [r.call.id for r in results if not r.callx_same_as_trace]
    token_mismatch = [
        r.call.id for r in results if any(t != r.floor_tokens for t in r.callx_tokens)
    ]
    reason = (_accuracy(results, "callx", "reason"), _accuracy(results, "peer", "reason"))
    product = (_accuracy(results, "callx", "product"), _accuracy(results, "peer", "product"))
    evaluated = mean([t for r in results for t in r.callx_tokens])
    floor_tokens = mean([r.floor_tokens for r in results])
    prompt_tokens = mean([r.prompt_tokens for r in results])
    setup = (
        f"{n} dev calls x {repeats} interleaved repeats (fastest kept), "
        f"n_threads={N_THREADS}, n_ctx={N_CTX}"
    )
    return [
        BenchRow(
            name="local call vs forward-pass floor",
            unit="s/call",
            floor=floor_s,
            callx=callx_s,
            ratio=callx_s / floor_s,
            target=f"<= {CALLX_TARGET}",
            met=callx_s / floor_s <= CALLX_TARGET,
            notes=f"{setup}; floor = new prompt tokens + callx's answer tokens one eval each",
            extra={**spread, "calls": per_call},
        ),
        BenchRow(
            name="local call vs floor with callx's own evals",
            unit="s/call",
            floor=floor_batched_s,
            callx=callx_s,
            ratio=callx_s / floor_batched_s,
            target="report",
            met=None,
            notes="the same tokens, batched as callx evaluates them (forced runs in one eval): "
            "what callx's Python adds over llama.cpp",
        ),
        BenchRow(
            name="local call vs peer (json-schema grammar)",
            unit="s/call",
            floor=peer_s,
            callx=callx_s,
            ratio=callx_s / peer_s,
            target=f"<= {PEER_TARGET}",
            met=callx_s / peer_s <= PEER_TARGET,
            notes="floor column = peer: create_chat_completion(response_format=json schema), "
            "chat_format=gemma, temperature 0, max_tokens 64",
            extra={"peer_generated_tokens_mean": mean([r.peer_generated for r in results])},
        ),
        BenchRow(
            name="reason accuracy vs peer",
            unit="fraction",
            floor=reason[1],
            callx=reason[0],
            ratio=reason[0] / reason[1] if reason[1] else None,
            target=">= peer",
            met=reason[0] >= reason[1],
            better="higher",
            notes="floor column = peer; an invalid answer counts as wrong",
        ),
        BenchRow(
            name="product match vs peer",
            unit="fraction",
            floor=product[1],
            callx=product[0],
            ratio=product[0] / product[1] if product[1] else None,
            target="report",
            met=None,
            better="higher",
            notes="floor column = peer; app.evaluation.metrics.product_matches",
        ),
        BenchRow(
            name="invalid answers (raw answer validated)",
            unit="answers",
            floor=float(peer_invalid),
            callx=float(callx_invalid),
            ratio=None,
            target="callx 0",
            met=callx_invalid == 0,
            notes=f"floor column = peer, out of {n}",
        ),
        BenchRow(
            name="tokens evaluated per call (prefix reused)",
            unit="tokens",
            floor=floor_tokens,
            callx=evaluated,
            ratio=evaluated / floor_tokens,
            target="= floor",
            met=not token_mismatch and not drift,
            notes=f"of {prompt_tokens:.0f} prompt tokens on average; callx answers identical "
            f"to the untimed pass: {not drift}",
            extra={
                "prompt_tokens_mean": prompt_tokens,
                "fraction_of_prompt": evaluated / prompt_tokens,
                "token_mismatch_calls": token_mismatch,
                "answers_changed_calls": drift,
            },
        ),
    ]


def run(quick: bool) -> list[BenchRow]:
    calls, warm = load_calls(6 if quick else 30)
    repeats = 2 if quick else 3
    return rows_from(measure(calls, warm, load_taxonomy(), repeats), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 calls instead of 30")
    parser.add_argument("--output", type=Path, default=REPORTS / "bench-local.json")
    args = parser.parse_args()
    rows = run(args.quick)
    report(rows, args.output)


if __name__ == "__main__":
    main()
