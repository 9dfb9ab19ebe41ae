"""Writing the adapter in llama.cpp's LoRA GGUF format, and its JSON model card.

llama.cpp reads an adapter GGUF with `general.type = adapter`, the base's architecture,
`adapter.type = lora` and `adapter.lora.alpha`, and tensors `<base tensor>.lora_a` (r, in) and
`.lora_b` (out, r) in PEFT's layout; it scales the update by alpha / r.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from app.finetune import FinetuneError
from app.finetune.data import file_sha256
from app.llm.calibration import (
    ANSWER_TASK,
    READ_DEFINITIONS_TASK,
    read_card,
    trained_taxonomies,
)
from app.llm.prompts import PROMPT_VERSION

if TYPE_CHECKING:
    from app.finetune.base_model import BaseModelInfo
    from app.finetune.data import SourceSummary
    from app.finetune.job import FinetuneJob, FinetuneResult

GGUF_TENSOR_SUFFIX = ".weight"


def gguf_tensor_names(hf_names: list[str], architecture: str, n_blocks: int) -> dict[str, str]:
    """HF layer names (`model.layers.0.self_attn.q_proj`) -> GGUF (`blk.0.attn_q.weight`)."""
    import gguf

    arch = next((a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == architecture), None)
    if arch is None:
        raise ValueError(f"gguf does not know the architecture {architecture!r}")
    mapping = gguf.get_tensor_name_map(arch, n_blocks)
    names: dict[str, str] = {}
    for hf_name in hf_names:
        name = mapping.get_name(hf_name)
        if name is None:
            raise ValueError(f"no GGUF tensor for layer {hf_name!r} of {architecture}")
        names[hf_name] = name + GGUF_TENSOR_SUFFIX
    return names


def write_adapter_gguf(
    path: Path,
    lora: dict[str, torch.Tensor],
    *,
    alpha: float,
    architecture: str,
    n_blocks: int,
    name: str | None = None,
) -> None:
    """Write `lora` (`{layer}.lora_a` / `{layer}.lora_b`, as `lora_state()` gives) as a GGUF.

    Written beside the target then renamed, so a reader never sees half a file.
    """
    import gguf

    layers = sorted({key.rsplit(".", 1)[0] for key in lora})
    names = gguf_tensor_names(layers, architecture, n_blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    if name:
        writer.add_name(name)
    # float16, as llama.cpp's own LoRA converter writes them: half the size of float32, and
    # the adapter's answers unchanged (measured on callx's test calls).
    for layer in layers:
        for part in ("lora_a", "lora_b"):
            array = lora[f"{layer}.{part}"].detach().to(torch.float16).cpu().numpy()
            writer.add_tensor(f"{names[layer]}.{part}", np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(partial, path)


def read_adapter_gguf(
    path: Path, layers: list[str], *, architecture: str, n_blocks: int
) -> tuple[dict[str, torch.Tensor], float]:
    """An adapter GGUF back as `lora_state()` tensors (float32) for `layers`, and its alpha.

    The inverse of `write_adapter_gguf`; raises FinetuneError on an adapter of another base
    architecture or other layers.
    """
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    if field(gguf.Keys.General.TYPE) != "adapter" or field(gguf.Keys.Adapter.TYPE) != "lora":
        raise FinetuneError(f"{path} is not a LoRA adapter GGUF")
    if field(gguf.Keys.General.ARCHITECTURE) != architecture:
        raise FinetuneError(f"{path} is an adapter for another architecture, not {architecture}")
    tensors = {t.name: t for t in reader.tensors}
    names = gguf_tensor_names(layers, architecture, n_blocks)
    wanted = {
        f"{names[layer]}.{part}": f"{layer}.{part}"
        for layer in layers
        for part in ("lora_a", "lora_b")
    }
    if set(tensors) != set(wanted):
        raise FinetuneError(f"{path} does not adapt the same layers as this run (--rank, targets)")
    state = {
        key: torch.from_numpy(np.array(tensors[name].data, dtype=np.float32))
        for name, key in wanted.items()
    }
    return state, float(field(gguf.Keys.Adapter.LORA_ALPHA))


def model_card(
    job: FinetuneJob,
    base: BaseModelInfo,
    summaries: list[SourceSummary],
    result: FinetuneResult,
    losses: list[float],
    wall_s: float,
) -> dict[str, Any]:
    """The adapter's provenance: base model, data, hyperparameters, what training did."""
    hyper = asdict(job.hyper)
    hyper["targets"] = list(job.hyper.targets)
    return {
        "adapter": job.output.name,
        "format": "llama.cpp LoRA GGUF",
        # What it was trained to do: answer the JSON, or read a list's definitions (a reader).
        "task": READ_DEFINITIONS_TASK if job.hyper.reads_definitions else ANSWER_TASK,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "callx_prompt_version": PROMPT_VERSION,
        "chat_format": job.chat_format,
        "base_model": {
            "file": base.path.name,
            "sha256": base.sha256,
            "architecture": base.architecture,
        },
        "init_adapter": _init_adapter(job.init_adapter),
        "training_files": [asdict(summary) for summary in summaries],
        # Every taxonomy it learnt, the earlier stages' included (app/llm/calibration.py).
        "taxonomies": {"trained": sorted(_trained_taxonomies(job.init_adapter, summaries))},
        "hyperparameters": {
            **hyper,
            "epochs": job.epochs,
            "max_steps": job.max_steps,
            "max_minutes": job.max_minutes,
            "stop_after_steps": job.stop_after_steps,
            "planned_steps": result.planned_steps,
        },
        "trainable_parameters": result.trainable_parameters,
        "steps": result.steps,
        "stopped_by": result.stopped_by,
        "examples": result.examples,
        "examples_seen": result.examples_seen,
        "epochs": result.epochs,
        "seconds_per_step": result.seconds_per_step,
        "train_s": result.train_s,  # the training loops, resumed runs included
        "wall_s": round(wall_s, 1),  # this run, loading and export included
        "device": result.device,
        "precision": result.precision,
        **loss_summary(losses),
    }


def _trained_taxonomies(init_adapter: Path | None, summaries: list[SourceSummary]) -> set[str]:
    earlier = _init_adapter(init_adapter) or {}
    return {s.taxonomy_version for s in summaries} | trained_taxonomies(earlier.get("card"))


def _init_adapter(adapter: Path | None) -> dict[str, Any] | None:
    """The adapter a run started from: its file, hash, and its own card's provenance."""
    if adapter is None:
        return None
    return {"file": adapter.name, "sha256": file_sha256(adapter), "card": read_card(adapter)}


def loss_summary(losses: list[float], every: int = 100, final_window: int = 10) -> dict[str, Any]:
    """Final loss (mean of the last `final_window` steps) and the mean of each `every` steps."""
    chunks = [losses[i : i + every] for i in range(0, len(losses), every)]
    tail = losses[-final_window:]
    return {
        "final_loss": round(sum(tail) / len(tail), 4) if tail else None,
        "final_loss_steps": len(tail),
        f"loss_per_{every}_steps": [round(sum(c) / len(c), 4) for c in chunks],
    }
