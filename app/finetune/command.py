"""`callx finetune`: options in, a run, a summary out. Imports torch: import after
`app.finetune.require_extra()`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from app.config import Settings
from app.finetune import FinetuneError
from app.finetune.data import parse_train_arg
from app.finetune.job import FinetuneJob, Hyperparameters
from app.finetune.train import run_finetune
from app.llm.model_files import default_model_path


def run_command(
    settings: Settings,
    console: Console,
    *,
    train: list[str],
    output: Path,
    taxonomy: str | None = None,
    base_model: Path | None = None,
    epochs: float | None = None,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    stop_after_steps: int | None = None,
    hyper: Hyperparameters | None = None,
    init_adapter: Path | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    precision: str = "auto",
) -> int:
    """Run `callx finetune`; returns the exit status (2 for bad inputs, with the reason printed).

    Files without `@TAXONOMY` use `taxonomy`, else the configured one, else the default.
    """

    def say(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    default_taxonomy = taxonomy if taxonomy is not None else settings.extraction.taxonomy_path
    try:
        sources = tuple(parse_train_arg(arg, default_taxonomy) for arg in train)
        job = FinetuneJob(
            sources=sources,
            model_path=base_model
            or settings.llamacpp.model_path
            or default_model_path(settings.cache_dir),
            output=output,
            hyper=hyper or Hyperparameters(),
            epochs=epochs,
            max_steps=max_steps,
            max_minutes=max_minutes,
            stop_after_steps=stop_after_steps,
            init_adapter=init_adapter,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
            chat_format=settings.llamacpp.chat_format,
            precision=precision,
        )
        result = run_finetune(job, say)
    except (FinetuneError, FileNotFoundError) as exc:
        say(f"callx finetune: {exc}")
        return 2
    stopped = " (time limit reached)" if result.stopped_by == "time" else ""
    per_step = f", {result.seconds_per_step} s/step" if result.seconds_per_step else ""
    say(
        f"{result.steps} steps{stopped}, {result.examples_seen} examples seen "
        f"({result.epochs} epochs of {result.examples}), final loss {result.final_loss}"
        f"{per_step} on {result.device}, {result.precision}"
    )
    say(f"adapter: {result.adapter}  (model card: {result.card})")
    setting = "READER_PATH" if job.hyper.reads_definitions else "LORA_PATH"
    say(f"use it with CALLX_LLAMACPP__{setting}={result.adapter}")
    return 0
