"""A training step of `callx finetune`, with the shared prompt head against running it whole.

* data: the default adapter's mix (app/llm/adapters/README.md): callx's own train calls four
  times, BANKING77 train and NatCS dev (intents8), `--limit-per-file 1500`, seed 0.
* floor: each step's micro-batches with every example run whole, the cost of a step before
  the head was shared (`collate(share_head=False)`).
* callx: the same micro-batches as `callx finetune` runs them: the head the examples of one
  taxonomy share (instructions and taxonomy) computed once per micro-batch.

Both do forward and backward, in bf16 autocast as on this CPU, with the same LoRA (rank 8).
The two are interleaved step by step to cancel the machine's drift. Also reported: the tokens
each runs through the model per step, which do not depend on the machine.

    .venv/bin/python -m bench.finetune_step            # 16 steps
    .venv/bin/python -m bench.finetune_step --quick    # 4 steps
Needs the finetune extra (`pip install -e '.[finetune]'`) and ../shared/datasets/ (or
CALLX_DATASETS=DIR).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench.common import BenchRow, report
from bench.local_support import REPORTS, ROOT, mean, model_path

STEPS_FULL, STEPS_QUICK = 16, 4


def _sources() -> list[str]:
    datasets = Path(os.environ.get("CALLX_DATASETS", ROOT.parent / "shared" / "datasets"))
    calls = str(ROOT / "data" / "calls" / "train.jsonl")
    return [calls] * 4 + [
        f"{datasets / 'banking77_intents' / 'train.jsonl'}@intents8",
        f"{datasets / 'natcs_dstc11_intents' / 'dev.jsonl'}@intents8",
    ]


def measure(steps: int) -> dict[str, list[float]]:
    from app.finetune import require_extra  # before torch: it sets OpenMP's wait policy

    require_extra()
    import torch

    from app.finetune.base_model import open_base_model
    from app.finetune.batches import StepOrder, micro_batches
    from app.finetune.data import build_examples, parse_train_arg
    from app.finetune.lora import add_lora
    from app.finetune.model import answer_loss_sum, collate, compute_dtype, load_base_model

    device = torch.device("cpu")
    torch.set_num_threads(os.cpu_count() or 1)
    path = model_path()
    tokens, base = open_base_model(path)
    sources = [parse_train_arg(arg, None) for arg in _sources()]
    examples, _ = build_examples(sources, tokens, limit_per_file=1500, seed=0)
    model = load_base_model(path, base.n_vocab, device)
    add_lora(model, 8, 16.0)
    dtype = compute_dtype("auto", device)
    order = StepOrder(len(examples), 8, seed=0)

    def step(index: int, share_head: bool) -> tuple[float, int]:
        batch = [examples[i] for i in order.indices(index)]
        started = time.perf_counter()
        computed = 0
        for micro in micro_batches(batch, 8, 4096):
            tensors = collate(micro, device, share_head=share_head)
            computed += tensors["head"].numel() + tensors["ids"].numel()
            answer_loss_sum(model, tensors, dtype).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - started, computed

    step(steps, True)  # warm-up, outside the measured steps
    figures: dict[str, list[float]] = {f"{n}_{k}": [] for n in ("floor", "callx") for k in "st"}
    for index in range(steps):
        for name, share in (("floor", False), ("callx", True)):
            seconds, computed = step(index, share)
            figures[f"{name}_s"].append(seconds)
            figures[f"{name}_t"].append(computed)
    return figures


def rows_from(figures: dict[str, list[float]]) -> list[BenchRow]:
    floor_s, callx_s = mean(figures["floor_s"]), mean(figures["callx_s"])
    floor_tok, callx_tok = mean(figures["floor_t"]), mean(figures["callx_t"])
    steps = len(figures["callx_s"])
    return [
        BenchRow(
            name="finetune: s per step of 8 (default adapter's data mix)",
            unit="s",
            floor=round(floor_s, 2),
            callx=round(callx_s, 2),
            ratio=round(callx_s / floor_s, 2),
            target="report (< 1.0)",
            met=callx_s < floor_s,
            notes=f"{steps} steps, forward and backward, floor: every example run whole",
        ),
        BenchRow(
            name="finetune: tokens run through the model per step (padding included)",
            unit="tokens",
            floor=round(floor_tok),
            callx=round(callx_tok),
            ratio=round(callx_tok / floor_tok, 2),
            target="report",
            met=None,
        ),
    ]


def run(quick: bool) -> list[BenchRow]:
    return rows_from(measure(STEPS_QUICK if quick else STEPS_FULL))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{STEPS_QUICK} steps")
    parser.add_argument("--output", type=Path, default=REPORTS / "bench-finetune-step.json")
    args = parser.parse_args()
    report(run(args.quick), args.output)


if __name__ == "__main__":
    main()
