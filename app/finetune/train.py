"""The training run: data, base model + LoRA, the optimizer loop, checkpoints and export."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from app.finetune import FinetuneError
from app.finetune.base_model import BaseModelInfo, open_base_model
from app.finetune.batches import StepOrder, micro_batches
from app.finetune.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from app.finetune.data import Example, build_examples
from app.finetune.export import (
    loss_summary,
    model_card,
    read_adapter_gguf,
    write_adapter_gguf,
)
from app.finetune.job import FinetuneJob, FinetuneResult
from app.finetune.lora import add_lora, load_lora_state, lora_parameters, lora_state
from app.finetune.model import (
    answer_loss_sum,
    collate,
    compute_dtype,
    load_base_model,
    pick_device,
)
from app.llm.calibration import card_path, write_card

Say = Callable[[str], None]


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier of 0-based `step`: linear warmup, then cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def run_finetune(job: FinetuneJob, say: Say = lambda _: None) -> FinetuneResult:
    """Train the adapter, checkpointing as it goes, and write the GGUF and its model card."""
    started = time.monotonic()
    job.check()
    hyper = job.hyper
    tokens, base = open_base_model(job.model_path, job.chat_format)
    examples, summaries = build_examples(
        job.sources,
        tokens,
        max_tokens=hyper.max_tokens,
        limit_per_file=hyper.limit_per_file,
        seed=hyper.seed,
        reads_definitions=hyper.reads_definitions,
    )
    say(f"{len(examples)} examples from {len(summaries)} file(s)")
    fingerprint = job.fingerprint(base, summaries)
    checkpoint = load_checkpoint(job.checkpoints, fingerprint) if job.resume else None
    if job.resume and checkpoint is None:
        say(f"no checkpoint in {job.checkpoints}: starting from the beginning")

    trainer = Trainer(job, examples, base.n_vocab, fingerprint, say)
    if job.init_adapter is not None and checkpoint is None:
        trainer.start_from_adapter(job.init_adapter, base)
        say(f"starting from the adapter {job.init_adapter}")
    if checkpoint is not None:
        trainer.restore(checkpoint)
        say(f"resuming from step {trainer.step} ({job.checkpoints})")
    result = trainer.run()

    write_adapter_gguf(
        job.output,
        lora_state(trainer.layers),
        alpha=hyper.alpha,
        architecture=base.architecture,
        n_blocks=base.n_blocks,
        name=job.output.stem,
    )
    wall_s = time.monotonic() - started
    write_card(job.output, model_card(job, base, summaries, result, trainer.losses, wall_s))
    return result


class Trainer:
    """The base model with LoRA layers, the optimizer, and the loop over steps."""

    def __init__(
        self, job: FinetuneJob, examples: list[Example], n_vocab: int, fingerprint: str, say: Say
    ) -> None:
        hyper = job.hyper
        self.job, self.hyper, self.examples, self.fingerprint = job, hyper, examples, fingerprint
        self.device = pick_device()
        self.dtype = compute_dtype(job.precision, self.device)
        if self.device.type == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(hyper.seed)
        say(f"loading the base model on {self.device_name}, {self.precision_name}")
        self.model = load_base_model(job.model_path, n_vocab, self.device)
        self.layers = add_lora(self.model, hyper.rank, hyper.alpha, hyper.targets)
        self.parameters = lora_parameters(self.layers)
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=hyper.lr, weight_decay=hyper.weight_decay
        )
        groups = [e.ids[: e.head] for e in examples] if hyper.group_steps else None
        self.order = StepOrder(len(examples), hyper.examples_per_step, hyper.seed, groups)
        self.total = job.max_steps or self.order.steps_for_epochs(job.epochs or 1.0)
        self.warmup = max(1, round(hyper.warmup_ratio * self.total))
        self.step, self.previous_train_s = 0, 0.0
        self.losses: list[float] = []
        self.say = say
        self._loop_started = time.monotonic()

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return f"cpu ({torch.get_num_threads()} threads)"

    @property
    def precision_name(self) -> str:
        return "bf16 autocast" if self.dtype == torch.bfloat16 else "fp32"

    def start_from_adapter(self, adapter: Path, base: BaseModelInfo) -> None:
        """Load a trained adapter's weights into the fresh LoRA layers (alpha must match)."""
        state, alpha = read_adapter_gguf(
            adapter, sorted(self.layers), architecture=base.architecture, n_blocks=base.n_blocks
        )
        rank = next(t.shape[0] for key, t in state.items() if key.endswith(".lora_a"))
        if rank != self.hyper.rank:
            raise FinetuneError(f"{adapter} has rank {rank}: give --rank {rank}")
        if alpha != self.hyper.alpha:
            raise FinetuneError(f"{adapter} has alpha {alpha:g}: give --alpha {alpha:g}")
        load_lora_state(self.layers, state)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint (already checked to match this job)."""
        load_lora_state(self.layers, checkpoint.lora)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.step, self.losses = checkpoint.step, list(checkpoint.losses)
        self.previous_train_s = checkpoint.train_s

    def save(self) -> None:
        """Checkpoint the current step."""
        state = Checkpoint(
            step=self.step,
            seed=self.hyper.seed,
            fingerprint=self.fingerprint,
            lora=lora_state(self.layers),
            optimizer=self.optimizer.state_dict(),
            losses=self.losses,
            train_s=self.previous_train_s + time.monotonic() - self._loop_started,
        )
        save_checkpoint(self.job.checkpoints, state)

    def run(self) -> FinetuneResult:
        """Train up to the planned step or the time limit; checkpoint at the end."""
        job = self.job
        first_step = self.step
        self._loop_started = time.monotonic()
        deadline = self._loop_started + job.max_minutes * 60 if job.max_minutes else None
        stopped_by = "steps"
        self.model.train()
        try:
            with _progress(job.progress, self.total, self.step) as advance:
                while self.step < self.total:
                    if job.stop_after_steps is not None and self.step >= job.stop_after_steps:
                        stopped_by = "stop_after_steps"
                        break
                    if deadline is not None and self._no_time_for_a_step(first_step, deadline):
                        stopped_by = "time"
                        break
                    self._train_step()
                    if self.step % job.checkpoint_every == 0 and self.step < self.total:
                        self.save()
                    advance(self.losses, deadline)
        except KeyboardInterrupt:
            self.optimizer.zero_grad(set_to_none=True)
            self.save()
            self.say(f"interrupted: checkpoint of step {self.step} in {job.checkpoints}")
            raise
        self.save()
        return self._result(stopped_by, self.step - first_step)

    def _no_time_for_a_step(self, first_step: int, deadline: float) -> bool:
        if self.step == first_step:
            return False  # always do at least one step
        per_step = (time.monotonic() - self._loop_started) / (self.step - first_step)
        return time.monotonic() + per_step > deadline

    def _train_step(self) -> None:
        hyper = self.hyper
        for group in self.optimizer.param_groups:
            group["lr"] = hyper.lr * lr_factor(
                self.step, self.total, self.warmup, hyper.min_lr_ratio
            )
        batch = [self.examples[i] for i in self.order.indices(self.step)]
        self.losses.append(self._accumulate(batch))
        torch.nn.utils.clip_grad_norm_(self.parameters, hyper.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _accumulate(self, batch: Sequence[Example]) -> float:
        """Gradient of one step, summed over its micro-batches; returns the mean token loss."""
        scored = sum(len(example.scored) for example in batch)
        total = 0.0
        for micro in micro_batches(batch, self.hyper.batch_size, self.hyper.micro_batch_tokens):
            loss = answer_loss_sum(self.model, collate(micro, self.device), self.dtype) / scored
            loss.backward()
            total += loss.item()
        return total

    def _result(self, stopped_by: str, run_steps: int) -> FinetuneResult:
        loop_s = time.monotonic() - self._loop_started
        seen = self.step * self.hyper.examples_per_step
        return FinetuneResult(
            adapter=self.job.output,
            card=card_path(self.job.output),
            steps=self.step,
            planned_steps=self.total,
            steps_this_run=run_steps,
            examples=len(self.examples),
            examples_seen=seen,
            epochs=round(seen / len(self.examples), 3),
            final_loss=loss_summary(self.losses)["final_loss"],
            stopped_by=stopped_by,
            seconds_per_step=round(loop_s / run_steps, 3) if run_steps else None,
            train_s=round(self.previous_train_s + loop_s, 1),
            device=self.device_name,
            precision=self.precision_name,
            trainable_parameters=sum(p.numel() for p in self.parameters),
        )


@contextmanager
def _progress(
    enabled: bool, total: int, done: int
) -> Iterator[Callable[[list[float], float | None], None]]:
    """A rich progress bar over the steps, with the recent loss and the time limit."""
    if not enabled:
        yield lambda losses, deadline: None
        return
    from app.progress import progress_bar

    with progress_bar() as bar:
        task = bar.add_task("training", total=total, completed=done)

        def advance(losses: list[float], deadline: float | None) -> None:
            recent = losses[-10:]
            text = f"training  loss {sum(recent) / len(recent):.3f}"
            if deadline is not None:
                left = max(0, int(deadline - time.monotonic()))
                text += f"  time limit in {left // 60}m{left % 60:02d}s"
            bar.update(task, completed=len(losses), description=text)

        yield advance
