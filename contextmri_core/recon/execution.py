"""How the prior's network runs on a device: the autocast dtype, and classifier-free guidance
as one batched network call or as two calls.

Resolved once, by one pure function, from explicit settings, so that the GPU branch
(autocast, one batched CFG call) can be forced on a CPU and tested there:

=========  =======================================  =================================
device     ``autocast="auto"``                      ``cfg_call="auto"``
=========  =======================================  =================================
cuda       on in ``precision`` (fp16/bf16), off     one batched call
           for fp32
cpu        off                                      two calls (faster on CPUs:
                                                    ``benchmarks/speed.py``)
other      off (``meta`` is shape-only: no          one batched call, as on GPUs
           autocast exists there)
=========  =======================================  =================================

``autocast="on"`` forces autocast in ``precision`` on any device type that has it (the CPU
too: ``torch.autocast("cpu", dtype=torch.bfloat16)``); ``cfg_call="batched"``/``"split"``
forces the CFG form. Autocast only changes what happens inside the network: the sampler
outside it stays complex64 (``DiffusionPrior.eps`` returns complex64 whatever runs inside).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Optional, Union

import torch

from contextmri_core.errors import ConfigError

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
AUTOCAST_MODES = ("auto", "on", "off")
CFG_CALLS = ("auto", "batched", "split")


@dataclass(frozen=True)
class ExecutionPlan:
    """``autocast_dtype`` None = no autocast; ``cfg_one_call``: both CFG halves in one call."""

    device_type: str
    autocast_dtype: Optional[torch.dtype]
    cfg_one_call: bool

    def autocast(self) -> ContextManager:
        """The autocast context of this plan (a no-op context without autocast)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def _autocast_available(device_type: str) -> bool:
    check = getattr(torch.amp, "is_autocast_available", None)
    return check(device_type) if check is not None else device_type in ("cpu", "cuda")


def execution_plan(device: Union[str, torch.device], precision: str = "fp32",
                   autocast: str = "auto", cfg_call: str = "auto") -> ExecutionPlan:
    """The plan for ``device`` from the settings (see the module table); a bad setting
    raises ``ConfigError`` naming it."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: use one of {sorted(PRECISIONS)}")
    if autocast not in AUTOCAST_MODES:
        raise ConfigError(f"autocast {autocast!r}: use one of {AUTOCAST_MODES}")
    if cfg_call not in CFG_CALLS:
        raise ConfigError(f"cfg_call {cfg_call!r}: use one of {CFG_CALLS}")
    kind = torch.device(device).type
    wanted = autocast == "on" or (autocast == "auto" and kind == "cuda")
    dtype = PRECISIONS[precision] if wanted and precision != "fp32" else None
    if dtype is not None and not _autocast_available(kind):
        raise ConfigError(f"autocast='on' is not available on device type {kind!r}: "
                          "use autocast='off' there")
    one_call = cfg_call == "batched" or (cfg_call == "auto" and kind != "cpu")
    return ExecutionPlan(device_type=kind, autocast_dtype=dtype, cfg_one_call=one_call)
