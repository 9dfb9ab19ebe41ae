"""A weighted mean of LoRA adapters, written exactly as one adapter.

Each adapter's update of a layer is (alpha / r) B A. The blend Σ w_i (alpha_i / r_i) B_i A_i is
itself a LoRA update of rank Σ r_i: A stacks the A_i, B stacks the B_i scaled by
w_i alpha_i / r_i, and alpha is the new rank, so llama.cpp scales it by 1. Nothing is
approximated; the price is the rank (two rank-8 adapters make one of rank 16).

Blending a fine-tuned adapter with the one it started from is "weight-space ensembling"
(Wortsman et al., 2022, WiSE-FT): it keeps much of what the fine-tuning gained while giving back
less of what the starting point knew. Needs only numpy and gguf (the finetune extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.finetune import FinetuneError


def blend_adapters(parts: Sequence[tuple[Path, float]], output: Path) -> int:
    """Write the blend of `parts` (adapter GGUF, weight) to `output`; returns its rank.

    The adapters must be LoRA GGUFs of one architecture adapting the same tensors; the weights
    must be positive (they need not sum to 1, though a mean's do).
    """
    import gguf

    if len(parts) < 2:
        raise FinetuneError("a blend needs at least two adapters")
    if any(weight <= 0 for _, weight in parts):
        raise FinetuneError("blend weights must be positive")
    read = [_read(path) for path, _ in parts]
    first = read[0]
    for (path, _), adapter in zip(parts[1:], read[1:], strict=True):
        if adapter["architecture"] != first["architecture"]:
            raise FinetuneError(
                f"{path} adapts {adapter['architecture']}, not {first['architecture']}"
            )
        if set(adapter["tensors"]) != set(first["tensors"]):
            raise FinetuneError(f"{path} does not adapt the same tensors as {parts[0][0]}")
        for name, tensor in adapter["tensors"].items():  # all but the rank must agree
            axis = 1 if name.endswith(".lora_a") else 0
            if tensor.shape[axis] != first["tensors"][name].shape[axis]:
                raise FinetuneError(
                    f"{path}: {name} is {tensor.shape}, against {first['tensors'][name].shape} "
                    f"in {parts[0][0]}: adapters of different base models"
                )
    rank = sum(adapter["rank"] for adapter in read)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), first["architecture"])
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))  # llama.cpp's scale: 1
        # No name: the same adapters and weights give the same bytes, wherever written.
        for name in sorted(first["tensors"]):
            if name.endswith(".lora_a"):
                stacked = np.concatenate([a["tensors"][name] for a in read], axis=0)
            else:
                scaled = [
                    a["tensors"][name] * (weight * a["alpha"] / a["rank"])
                    for a, (_, weight) in zip(read, parts, strict=True)
                ]
                stacked = np.concatenate(scaled, axis=1)
            writer.add_tensor(name, np.ascontiguousarray(stacked.astype(np.float16)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, output)
    return rank


def _read(path: Path) -> dict[str, Any]:
    """Architecture, alpha, rank and float32 tensors of a LoRA adapter GGUF."""
    import gguf

    if not path.is_file():
        raise FinetuneError(f"no such adapter: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise FinetuneError(f"{path} is not a GGUF file ({exc})") from None

    def field(key: str) -> Any:
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    if field(gguf.Keys.General.TYPE) != "adapter" or field(gguf.Keys.Adapter.TYPE) != "lora":
        raise FinetuneError(f"{path} is not a LoRA adapter GGUF")
    plain = (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32)
    odd = sorted({t.tensor_type.name for t in reader.tensors if t.tensor_type not in plain})
    if odd:  # their data would read as raw bytes
        raise FinetuneError(f"{path} has {', '.join(odd)} tensors: only F16 and F32 are blended")
    tensors = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    ranks = {a.shape[0] for name, a in tensors.items() if name.endswith(".lora_a")}
    if len(ranks) != 1:
        raise FinetuneError(f"{path} has LoRA tensors of several ranks: {sorted(ranks)}")
    rank = ranks.pop()
    return {
        "architecture": field(gguf.Keys.General.ARCHITECTURE),
        # llama.cpp scales by 1 where alpha is missing or 0: alpha = rank does the same
        "alpha": float(field(gguf.Keys.Adapter.LORA_ALPHA) or rank),
        "rank": rank,
        "tensors": tensors,
    }
