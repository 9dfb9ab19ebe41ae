"""The base model in torch (transformers reads the GGUF and de-quantizes it) and the loss.

The loss computes the output layer (262k-token vocabulary for Gemma 3) only where an answer
token is predicted: the body's hidden states are gathered at those positions first. And the
prompt head a micro-batch shares (instructions and taxonomy, most of a short record's tokens)
runs once for the micro-batch, not once per example. Those two are most of the speed of a
training step on CPU.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.finetune import FinetuneError
from app.finetune.data import Example, common_prefix_length

PAD_ID = 0


PRECISIONS = ("auto", "bf16", "fp32")


def pick_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bfloat16 to run the base model under autocast, None for float32.

    `auto` takes bfloat16 where the hardware has it natively (most GPUs; CPUs with AVX512-BF16
    or AMX, where it halves the time of a step), else float32. LoRA weights and the optimizer
    stay float32 either way.
    """
    if precision not in PRECISIONS:
        raise FinetuneError(f"precision must be one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return torch.bfloat16 if precision == "bf16" else None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if _cpu_has_native_bf16() else None


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text("utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=1)
def _load(path: str, device: str) -> nn.Module:
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    file = Path(path)
    # Any: transformers' models are nn.Modules whose attributes (config, model, lm_head) its
    # type hints do not declare.
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(file.parent), gguf_file=file.name, dtype=torch.float32
    )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device).eval()


def load_base_model(model_path: Path, n_vocab: int, device: torch.device) -> nn.Module:
    """A frozen float32 copy of the base model; the weights are loaded once per process.

    Each call returns a new module tree sharing the (frozen) weights, so LoRA layers added to
    one copy do not leak into the next.
    """
    base: Any = _load(str(Path(model_path).resolve()), str(device))
    vocab = base.config.vocab_size
    if vocab != n_vocab:
        raise FinetuneError(
            f"transformers reads a vocabulary of {vocab} tokens, llama.cpp {n_vocab}: "
            "the token ids would not match"
        )
    shared = {id(t): t for t in [*base.parameters(), *base.buffers()]}
    return copy.deepcopy(base, memo=shared)


def collate(
    examples: Sequence[Example], device: torch.device, share_head: bool = True
) -> dict[str, torch.Tensor]:
    """The micro-batch as tensors: its shared head once, then each example's right-padded rest.

    The head is the prompt prefix every example shares (see Example.head), up to the first
    position that predicts a scored token. Also, for each scored token: its row, the position
    (in the rest) predicting it, and the token. No attention mask is needed: with right padding
    and causal attention no real token ever attends to a pad. `share_head=False` runs every
    example whole (what bench.finetune_step measures against).
    """
    first_prediction = min(index - 1 for e in examples for index in e.scored)
    head = min(common_prefix_length([e.ids for e in examples]), first_prediction)
    head = head if share_head else 0
    width = max(len(e.ids) for e in examples) - head
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    rows: list[int] = []
    positions: list[int] = []
    for row, example in enumerate(examples):
        ids[row, : len(example.ids) - head] = torch.tensor(example.ids[head:])
        rows.extend([row] * len(example.scored))
        positions.extend(index - 1 - head for index in example.scored)
    rows_t = torch.tensor(rows)
    positions_t = torch.tensor(positions)
    return {
        "head": torch.tensor([examples[0].ids[:head]], dtype=torch.long).to(device),
        "ids": ids.to(device),
        "rows": rows_t.to(device),
        "positions": positions_t.to(device),
        "targets": ids[rows_t, positions_t + 1].to(device),
    }


def answer_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Scores of the next token at the positions that predict scored tokens: (n, vocab).

    The shared head runs once, batch size 1; its keys and values are repeated for every row,
    and the rows run on after it. Gradients flow back through the repeat into the head, so the
    loss and its gradient are those of running every example whole.
    """
    from transformers import DynamicCache

    net = _untyped(model)
    head, ids = batch["head"], batch["ids"]
    cache = None
    if head.shape[1]:
        cache = DynamicCache(config=net.config)
        net.model(input_ids=head, cache=cache, use_cache=True)
        cache.batch_repeat_interleave(ids.shape[0])
    start = head.shape[1]
    positions = torch.arange(start, start + ids.shape[1], device=ids.device)
    hidden = net.model(
        input_ids=ids,
        position_ids=positions.expand(ids.shape[0], -1),
        cache=cache,
        use_cache=cache is not None,
    ).last_hidden_state
    logits = net.lm_head(hidden[batch["rows"], batch["positions"]]).float()
    cap = getattr(net.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def answer_loss_sum(
    model: nn.Module, batch: dict[str, torch.Tensor], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Summed cross-entropy of the scored answer tokens of a batch (autocast to `dtype`)."""
    device_type = batch["ids"].device.type
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = answer_logits(model, batch)
    return nn.functional.cross_entropy(logits, batch["targets"], reduction="sum")


def _untyped(model: nn.Module) -> Any:
    """A transformers model, whose attributes (config, model, lm_head) nn.Module does not
    declare."""
    return model
