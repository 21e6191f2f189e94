"""``DiffusionPrior``: UNet + condition encoder + schedule + normalisation facts in one module.

The network sees complex images as 2 real channels (real, imag); everything outside this
module works with complex64 ``(B, ny, nx)`` = (E1 rows, RO columns). Images whose sides are not
multiples of the UNet's downsampling factor are zero-padded around the centre and cropped back.
A network of the published convention (``Normalisation.convention == "published"``) was
trained with the readout along image rows (fastMRI's orientation): ``eps`` transposes its input
and its output, so callers never see the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.errors import ConfigError
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.presets import downsampling_factor
from contextmri_core.prior.schedule import ScheduleConfig, alphas_cumprod


CONVENTIONS = ("contextmri", "published")


@dataclass(frozen=True)
class Normalisation:
    """How training images were made: complex MVUE / its ``percentile`` of ``|x|``, centre
    cropped to ``image_size`` (rows, columns as the network saw them).

    ``convention``: "contextmri" (ours: rows = E1, the prior runs on the whole acquired grid)
    or "published" (the published ContextMRI release: rows = readout, the network saw centred
    ``image_size`` crops scaled by the percentile over the crop; its sampler defaults are the
    paper's, see ``recon.presets``).
    """

    percentile: float = 0.99
    image_size: Tuple[int, int] = (128, 128)
    convention: str = "contextmri"

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ConfigError(f"normalisation.convention {self.convention!r}: use one of "
                              f"{list(CONVENTIONS)}")

    @property
    def readout_along_rows(self) -> bool:
        """True when the network saw the readout along image rows (fastMRI orientation)."""
        return self.convention == "published"

    @property
    def canvas(self) -> Tuple[int, int]:
        """The network's training size in our orientation ``(E1, RO)``."""
        h, w = (int(n) for n in self.image_size)
        return (w, h) if self.readout_along_rows else (h, w)

    def to_dict(self) -> dict:
        return {"percentile": self.percentile, "image_size": list(self.image_size),
                "convention": self.convention}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalisation":
        return cls(percentile=float(d["percentile"]), image_size=tuple(d["image_size"]),
                   convention=str(d.get("convention", "contextmri")))


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
        """Predicted noise for complex ``x`` ``(B, E1, RO)`` at integer timesteps ``t`` ``(B,)``
        (transposed to the network's orientation and back when it differs)."""
        if self.normalisation.readout_along_rows:
            return self._eps(x.transpose(-2, -1), t, cond).transpose(-2, -1).contiguous()
        return self._eps(x, t, cond)

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """eps of ``x`` in the network's own orientation ``(B, H, W)``."""
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
