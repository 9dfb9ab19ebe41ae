"""What a fine-tuning run is asked to do (options, hyperparameters) and what it did."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.finetune import FinetuneError
from app.finetune.base_model import BaseModelInfo
from app.finetune.data import DEFAULT_MAX_TOKENS, SourceSummary, TrainSource, file_sha256
from app.finetune.lora import DEFAULT_TARGETS
from app.finetune.model import PRECISIONS
from app.llm.calibration import READ_DEFINITIONS_TASK, card_task, read_card


@dataclass(frozen=True)
class Hyperparameters:
    """What shapes the adapter. Those in `fingerprint_fields` must not change on --resume."""

    rank: int = 16
    alpha: float = 32.0
    lr: float = 2e-4
    batch_size: int = 8  # examples per micro-batch (per step without accumulation)
    grad_accum: int = 1  # micro-batches per optimizer step
    micro_batch_tokens: int = 4096  # padded tokens per forward pass at most (bounds memory)
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1  # cosine decay down to lr * this
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    limit_per_file: int | None = None
    seed: int = 0
    # A reader: trained to say the definition of a call's reason (data.make_reading_example).
    reads_definitions: bool = False
    group_steps: bool = False  # a step's examples from one taxonomy where it can (StepOrder);
    # part of the checkpoint's fingerprint when set
    targets: tuple[str, ...] = DEFAULT_TARGETS

    fingerprint_fields = (
        "rank", "alpha", "batch_size", "grad_accum", "max_tokens", "limit_per_file", "seed",
        "targets",
    )  # fmt: skip

    @property
    def examples_per_step(self) -> int:
        return self.batch_size * self.grad_accum


@dataclass(frozen=True)
class FinetuneJob:
    """One `callx finetune` invocation."""

    sources: tuple[TrainSource, ...]
    model_path: Path
    output: Path
    hyper: Hyperparameters = field(default_factory=Hyperparameters)
    epochs: float | None = None  # default 1 when max_steps is not set either
    max_steps: int | None = None
    max_minutes: float | None = None
    # Stop after this step, the schedule still planned for epochs/max_steps: replays a run
    # that max_minutes cut short, exactly.
    stop_after_steps: int | None = None
    # Start the LoRA from this adapter's weights instead of PEFT's init (same rank, alpha and
    # layers): continues a trained adapter on new data, with a new schedule.
    init_adapter: Path | None = None
    checkpoint_dir: Path | None = None  # default: OUTPUT + ".ckpt"
    checkpoint_every: int = 50
    resume: bool = False
    chat_format: str = "gemma"
    precision: str = "auto"  # auto, bf16 or fp32 (see model.compute_dtype)
    progress: bool = True

    @property
    def checkpoints(self) -> Path:
        """The checkpoint folder."""
        return self.checkpoint_dir or self.output.with_name(self.output.name + ".ckpt")

    def check(self) -> None:
        """Raise FinetuneError on options that cannot work, before anything is loaded."""
        hyper = self.hyper
        if self.epochs is not None and self.max_steps is not None:
            raise FinetuneError("give --epochs or --max-steps, not both")
        checks = {
            "--epochs": self.epochs is None or self.epochs > 0,
            "--max-steps": self.max_steps is None or self.max_steps > 0,
            "--max-minutes": self.max_minutes is None or self.max_minutes > 0,
            "--stop-after-steps": self.stop_after_steps is None or self.stop_after_steps > 0,
            "--checkpoint-every": self.checkpoint_every > 0,
            "--batch-size": hyper.batch_size > 0,
            "--grad-accum": hyper.grad_accum > 0,
            "--lr": hyper.lr > 0,
            "--rank": hyper.rank > 0,
            "--alpha": hyper.alpha > 0,
            "--max-tokens": hyper.max_tokens > 0,
            "--limit-per-file": hyper.limit_per_file is None or hyper.limit_per_file > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise FinetuneError(f"{', '.join(bad)} must be positive")
        if self.precision not in PRECISIONS:
            raise FinetuneError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.output.suffix != ".gguf":
            raise FinetuneError(f"--output must name a .gguf file, not {self.output}")
        if not self.sources:
            raise FinetuneError("give at least one --train file")
        if self.init_adapter is not None and not self.init_adapter.is_file():
            raise FinetuneError(f"--init-adapter: no such file: {self.init_adapter}")
        if self.init_adapter is not None and self.init_adapter.resolve() == self.output.resolve():
            raise FinetuneError("--init-adapter must not be the --output file")
        if self.init_adapter is not None:
            reader = card_task(read_card(self.init_adapter)) == READ_DEFINITIONS_TASK
            if reader and not self.hyper.reads_definitions:
                raise FinetuneError(
                    f"--init-adapter {self.init_adapter} is a reader (its card's task is "
                    f"{READ_DEFINITIONS_TASK}): continue it with --reads-definitions"
                )
            if self.hyper.reads_definitions and not reader:
                raise FinetuneError(
                    f"--init-adapter {self.init_adapter} answers calls: a reader "
                    "(--reads-definitions) starts from the base model or from another reader"
                )

    def fingerprint(self, base: BaseModelInfo, summaries: list[SourceSummary]) -> str:
        """Identity of what a checkpoint may be resumed with: base, data, shaping options."""
        identity: dict[str, Any] = {
            "base": base.sha256,
            "chat_format": self.chat_format,
            "files": [(s.sha256, s.taxonomy_version) for s in summaries],
            "init_adapter": file_sha256(self.init_adapter) if self.init_adapter else None,
            "hyper": {name: getattr(self.hyper, name) for name in self.hyper.fingerprint_fields},
        }
        if self.hyper.group_steps:  # only when set: checkpoints from before it still resume
            identity["group_steps"] = True
        if self.hyper.reads_definitions:  # the same
            identity["reads_definitions"] = True
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class FinetuneResult:
    """What a run did and wrote."""

    adapter: Path
    card: Path
    steps: int  # in total, resumed runs included
    planned_steps: int
    steps_this_run: int
    examples: int
    examples_seen: int
    epochs: float
    final_loss: float | None
    stopped_by: str  # "steps", "time" or "stop_after_steps"
    seconds_per_step: float | None  # this run
    train_s: float  # training loops of all runs
    device: str
    precision: str
    trainable_parameters: int
