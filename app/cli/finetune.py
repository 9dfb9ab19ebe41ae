"""`callx finetune`: a LoRA adapter of the local model, trained on labelled calls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli, err
from app.config import get_settings


@cli.command()
def finetune(
    train: Annotated[
        list[str],
        typer.Option(
            help="Labelled JSONL/CSV (transcript or text, reason, product). FILE@TAXONOMY gives "
            "the file its own taxonomy: a file or a built-in name (default, intents8). Repeatable."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Adapter GGUF to write (model card: .json).")
    ],
    taxonomy: Annotated[
        str | None, typer.Option(help="Taxonomy of files without @ (default: configured).")
    ] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data (default 1).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps, instead.")] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop cleanly and export when the time is up.")
    ] = None,
    stop_after_steps: Annotated[
        int | None,
        typer.Option(
            help="Stop after this step, the learning-rate schedule still planned for "
            "--epochs/--max-steps: replays exactly a run that --max-minutes cut short."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per batch.")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warmup, cosine decay).")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option(help="LoRA alpha (scale alpha/rank).")] = 32.0,
    max_tokens: Annotated[
        int, typer.Option(help="Tokens per example; longer calls are cut in the middle.")
    ] = 1024,
    limit_per_file: Annotated[
        int | None, typer.Option(help="At most N records per file (seeded, by reason).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data order and the LoRA init.")] = 0,
    group_steps: Annotated[
        bool,
        typer.Option(
            help="Give each step examples of one taxonomy where it can: the prompt head they "
            "share is computed once (faster on a mix of long calls in many taxonomies)."
        ),
    ] = False,
    reads_definitions: Annotated[
        bool,
        typer.Option(
            help="Train a reader instead: the model learns to say, after a call, the definition "
            "of its reason, as the backend reads a list the answering adapter was not trained "
            "on (CALLX_LLAMACPP__READER_PATH)."
        ),
    ] = False,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    init_adapter: Annotated[
        Path | None,
        typer.Option(
            help="Start from this adapter's weights (same --rank and --alpha): continues a "
            "trained adapter on new data, with a new schedule."
        ),
    ] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 50,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Checkpoints (default: OUTPUT.ckpt/).")
    ] = None,
    base_model: Annotated[
        Path | None, typer.Option(help="Base GGUF (default: the configured local model).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 where the hardware has it), bf16 or fp32.")
    ] = "auto",
) -> None:
    """Train a LoRA adapter of the local model on labelled calls, in llama.cpp's GGUF format."""
    from app.finetune import MissingExtraError, require_extra

    try:
        require_extra()
    except MissingExtraError as exc:
        err.print(f"callx finetune: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    from app.finetune.command import run_command
    from app.finetune.job import Hyperparameters

    hyper = Hyperparameters(
        rank=rank,
        alpha=alpha,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_tokens=max_tokens,
        limit_per_file=limit_per_file,
        seed=seed,
        group_steps=group_steps,
        reads_definitions=reads_definitions,
    )
    status = run_command(
        get_settings(),
        err,
        train=train,
        output=output,
        taxonomy=taxonomy,
        base_model=base_model,
        epochs=epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        stop_after_steps=stop_after_steps,
        hyper=hyper,
        init_adapter=init_adapter,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
        precision=precision,
    )
    raise typer.Exit(status)
