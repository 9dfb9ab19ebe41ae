"""LoRA: a trainable low-rank update beside each frozen linear layer (PEFT's convention).

y = W x + (alpha / r) * B (A x), with A of shape (r, in) initialised small (Kaiming-uniform, as
PEFT does) and B of shape (out, r) zero, so training starts from the base model exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_TARGETS = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a LoRA update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError("LoRA rank must be at least 1")
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        weight = base.weight
        self.lora_a = nn.Parameter(
            torch.empty(rank, base.in_features, dtype=weight.dtype, device=weight.device)
        )
        self.lora_b = nn.Parameter(
            torch.zeros(base.out_features, rank, dtype=weight.dtype, device=weight.device)
        )
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = nn.functional.linear(nn.functional.linear(x, self.lora_a), self.lora_b)
        return self.base(x) + update * self.scaling


def add_lora(
    model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = DEFAULT_TARGETS
) -> dict[str, LoRALinear]:
    """Freeze `model` and wrap its linear layers named in `targets`; returns them by name.

    Names are the wrapped layers' names in the model (e.g. `model.layers.0.self_attn.q_proj`).
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped: dict[str, LoRALinear] = {}
    for name, module in list(model.named_modules()):
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            wrapped[name] = LoRALinear(module, rank, alpha)
            setattr(parent, child, wrapped[name])
    if not wrapped:
        raise ValueError(f"no linear layer named {', '.join(targets)} in the model")
    return wrapped


def lora_parameters(layers: dict[str, LoRALinear]) -> list[nn.Parameter]:
    """The trainable parameters, in a fixed order (A then B of each layer, by name)."""
    return [p for name in sorted(layers) for p in (layers[name].lora_a, layers[name].lora_b)]


def lora_state(layers: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """`{name}.lora_a` / `{name}.lora_b` -> CPU float32 copies."""
    state: dict[str, torch.Tensor] = {}
    for name in sorted(layers):
        state[f"{name}.lora_a"] = layers[name].lora_a.detach().float().cpu().clone()
        state[f"{name}.lora_b"] = layers[name].lora_b.detach().float().cpu().clone()
    return state


def load_lora_state(layers: dict[str, LoRALinear], state: dict[str, torch.Tensor]) -> None:
    """Copy a `lora_state()` back into the layers (shapes must match)."""
    expected = {f"{name}.lora_{part}" for name in layers for part in "ab"}
    if set(state) != expected:
        raise ValueError("the saved LoRA does not match the model's LoRA layers")
    with torch.no_grad():
        for name, layer in layers.items():
            layer.lora_a.copy_(state[f"{name}.lora_a"])
            layer.lora_b.copy_(state[f"{name}.lora_b"])
