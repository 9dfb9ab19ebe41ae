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

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from app.finetune import FinetuneError
from app.llm.calibration import card_path, read_card, write_card
from app.llm.model_files import file_sha256

# A blend's part as its card names it: {"id", "name", "sha256"} for a registered adapter,
# {"file", "sha256"} for a file; with its weight and its own card.
Part = tuple[dict[str, Any], float, dict[str, Any] | None]


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
        writer.close()
        os.replace(partial, output)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return rank


def blend_card(output: Path, rank: int, parts: Sequence[Part], created_by: str) -> dict[str, Any]:
    """The card of a blend: its parts with their weights and cards, and what `callx improve`
    needs to continue from it (rank, and alpha = rank: scale 1). It carries no calibration,
    since neither part's temperature fits it. Base model and targets: the first part's card
    that gives them; the prompt versions: every part's, in order ("p1 + p2" where they differ)."""
    cards = [card or {} for _, _, card in parts]
    base = next((c["base_model"] for c in cards if c.get("base_model")), None)
    targets = next(
        (
            c["hyperparameters"]["targets"]
            for c in cards
            if (c.get("hyperparameters") or {}).get("targets")
        ),
        None,
    )
    prompts: list[str] = []
    for card in cards:
        version = card.get("callx_prompt_version")
        if version and version not in prompts:
            prompts.append(version)
    return {
        "adapter": output.name,
        "created_by": created_by,
        "base_model": base,
        "callx_prompt_version": " + ".join(prompts) or None,
        "rank": rank,
        "hyperparameters": {
            "rank": rank,
            "alpha": float(rank),
            **({"targets": targets} if targets else {}),
        },
        "blend_of": [
            {**named, "weight": round(weight, 6), "card": card} for named, weight, card in parts
        ],
    }


def blend_files(parts: Sequence[tuple[Path, float]], output: Path) -> dict[str, Any]:
    """Blend adapter files into `output` (a .gguf, none of the parts) and write its card beside
    it; returns the card. On any failure neither the blend nor its card is left behind."""
    if output.suffix != ".gguf":
        raise FinetuneError(f"--output must name a .gguf file, not {output}")
    if any(path.resolve() == output.resolve() for path, _ in parts):
        raise FinetuneError(f"--output must not be one of the adapters blended: {output}")
    named = []
    for path, weight in parts:  # read before anything is written
        if not path.is_file():
            raise FinetuneError(f"no such adapter: {path}")
        try:
            card = read_card(path)
        except (UnicodeDecodeError, ValueError):
            raise FinetuneError(f"{card_path(path)}: the card is not JSON") from None
        named.append(({"file": path.name, "sha256": file_sha256(path)}, weight, card))
    rank = blend_adapters(parts, output)
    try:
        card = blend_card(output, rank, named, created_by="python -m app.finetune.blend")
        write_card(output, card)
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return card


def main(argv: Sequence[str] | None = None) -> None:
    """python -m app.finetune.blend FIRST.gguf SECOND.gguf --weight W --output OUT.gguf: the
    recipes' way to a blend without a registry (`callx models blend` registers one, and refuses
    the same adapter twice; here it gives that adapter's update again, at twice the rank)."""
    parser = _OneLineErrors(prog="python -m app.finetune.blend", description=main.__doc__)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--weight", type=float, required=True, help="the second's share, in (0, 1)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if not 0 < args.weight < 1:
        parser.error(f"--weight is the second adapter's share, in (0, 1), not {args.weight:g}")
    try:
        card = blend_files([(args.first, 1 - args.weight), (args.second, args.weight)], args.output)
    except FinetuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ImportError:
        print("error: blending needs gguf: pip install -e '.[finetune]'", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"written: {args.output} (rank {card['rank']})")


class _OneLineErrors(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (`--help` still gives the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}\n")


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


if __name__ == "__main__":
    main()
