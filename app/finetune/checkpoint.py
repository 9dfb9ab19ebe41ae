"""Training checkpoints: LoRA weights, optimizer state, step, data-order seed, loss history.

One file, `last.pt`, in the checkpoint folder, replaced atomically: a run killed while saving
keeps the previous checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.finetune import FinetuneError

FORMAT = 1
FILE_NAME = "last.pt"


@dataclass
class Checkpoint:
    """Everything needed to continue a run exactly where it stopped."""

    step: int  # optimizer steps done
    seed: int
    fingerprint: str  # of the data and the hyperparameters that fix the model and data order
    lora: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    losses: list[float]  # one per step done
    train_s: float  # training time of all runs so far


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> Path:
    """Write `folder/last.pt` atomically; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILE_NAME
    partial = folder / (FILE_NAME + ".partial")
    torch.save({"format": FORMAT, **checkpoint.__dict__}, partial)
    os.replace(partial, target)
    return target


def load_checkpoint(folder: Path, fingerprint: str) -> Checkpoint | None:
    """The last checkpoint in `folder`, None if there is none.

    A checkpoint of other data or hyperparameters is an error rather than silently mixed in.
    """
    file = folder / FILE_NAME
    if not file.is_file():
        return None
    data = torch.load(file, map_location="cpu", weights_only=True)
    if data.pop("format", None) != FORMAT:
        raise FinetuneError(f"{file}: not a checkpoint of this version of callx finetune")
    checkpoint = Checkpoint(**data)
    if checkpoint.fingerprint != fingerprint:
        raise FinetuneError(
            f"{file} was made with other training data or hyperparameters: "
            "start over without --resume, or use another --checkpoint-dir"
        )
    return checkpoint
