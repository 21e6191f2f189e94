"""LoRA adapters on the UNet's attention projections (Metadata Matters' cheap fine-tuning):
``W x + (alpha / r) B A x`` with ``B = 0`` at the start, merged back into ``W`` for saving so
checkpoints keep the plain format."""

from __future__ import annotations

import copy
from typing import Iterable, List

import torch
from torch import nn

#: projection names of diffusers' attention blocks; add_k/add_v read the condition tokens
TARGETS = ("to_q", "to_k", "to_v", "add_k_proj", "add_v_proj")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable rank-``r`` update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        a = torch.randn(rank, base.in_features, generator=generator) / base.in_features ** 0.5
        self.lora_a = nn.Parameter(a.to(base.weight.device, base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                               dtype=base.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        out = copy.deepcopy(self.base)
        with torch.no_grad():
            out.weight += self.scale * (self.lora_b @ self.lora_a)
        return out.requires_grad_(True)


def _named_targets(module: nn.Module, targets: Iterable[str]):
    for name, child in list(module.named_modules()):
        for attr in targets:
            lin = getattr(child, attr, None)
            if isinstance(lin, nn.Linear):
                yield child, attr, lin


def add_lora(unet: nn.Module, rank: int, alpha: float, generator: torch.Generator) -> List[nn.Parameter]:
    """Freeze ``unet`` and wrap every attention projection; returns the LoRA parameters."""
    unet.requires_grad_(False)
    params: List[nn.Parameter] = []
    for parent, attr, lin in list(_named_targets(unet, TARGETS)):
        wrapped = LoRALinear(lin, rank, alpha, generator)
        setattr(parent, attr, wrapped)
        params += [wrapped.lora_a, wrapped.lora_b]
    return params


def merge_lora(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``LoRALinear`` merged into a plain ``nn.Linear``."""
    out = copy.deepcopy(module)
    for parent in list(out.modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, attr, child.merged())
    return out
