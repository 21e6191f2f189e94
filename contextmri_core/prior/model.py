"""``DiffusionPrior``: UNet + condition encoder + schedule + normalisation facts in one module.

The network sees complex images as 2 real channels (real, imag); everything outside this
module works with complex64 ``(B, ny, nx)``. Images whose sides are not multiples of the
UNet's downsampling factor are zero-padded around the centre and cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.presets import downsampling_factor
from contextmri_core.prior.schedule import ScheduleConfig, alphas_cumprod


@dataclass(frozen=True)
class Normalisation:
    """How training images were scaled: complex MVUE / its ``percentile`` of ``|x|``, centre
    cropped to ``image_size`` (ny, nx)."""

    percentile: float = 0.99
    image_size: Tuple[int, int] = (128, 128)

    def to_dict(self) -> dict:
        return {"percentile": self.percentile, "image_size": list(self.image_size)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        return cls(percentile=float(d["percentile"]), image_size=tuple(d["image_size"]))


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """complex ``(B, H, W)`` -> real ``(B, 2, H, W)`` (real, imag)."""
    return torch.view_as_real(x).permute(0, 3, 1, 2).contiguous()


def from_channels(x: torch.Tensor) -> torch.Tensor:
    """real ``(B, 2, H, W)`` -> complex64 ``(B, H, W)``."""
    return torch.complex(x[:, 0].float(), x[:, 1].float())


def _pad_amounts(n: int, factor: int) -> Tuple[int, int]:
    total = (-n) % factor
    return total // 2, total - total // 2


class DiffusionPrior(nn.Module):
    """epsilon-prediction prior ``eps(x_t, t, cond)`` on complex images."""

    def __init__(self, unet: nn.Module, encoder: ConditionEncoder, schedule: ScheduleConfig,
                 normalisation: Normalisation = Normalisation(), info: Optional[dict] = None):
        super().__init__()
        self.unet = unet
        self.encoder = encoder
        self.schedule = schedule
        self.normalisation = normalisation
        self.info = dict(info or {})
        self.register_buffer("alphas_cumprod", alphas_cumprod(schedule).float(), persistent=False)
        self._factor = downsampling_factor(dict(unet.config))

    def encode(self, metadata: Sequence[Optional[ScanMetadata]],
               drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Condition tokens ``(B, L, D)``."""
        return self.encoder(metadata, drop)

    def unconditional(self, batch_size: int) -> torch.Tensor:
        return self.encoder.unconditional(batch_size)

    def eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Predicted noise for complex ``x`` ``(B, H, W)`` at integer timesteps ``t`` ``(B,)``."""
        h, w = x.shape[-2:]
        (pt, pb), (pl, pr) = _pad_amounts(h, self._factor), _pad_amounts(w, self._factor)
        inp = to_channels(x)
        if pt or pb or pl or pr:
            inp = F.pad(inp, (pl, pr, pt, pb))
        dtype = next(self.unet.parameters()).dtype
        out = self.unet(inp.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample
        return from_channels(out[..., pt:pt + h, pl:pl + w])

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.eps(x, t, cond)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())
