"""CLIP text encoder (ContextMRI): the prompt (``build_prompt`` or the published release's
vocabulary, ``data.published``) -> frozen ``CLIPTextModel`` tokens.

Loaded only from a local directory holding ``text_encoder/`` and ``tokenizer/`` as written by
``save_pretrained`` (the diffusers checkpoint layout); nothing is ever downloaded. The text
model is frozen and kept outside the module tree: it is not in ``parameters()`` or
``state_dict()`` (its weights travel as ``text_encoder/``), but ``.to()``/``.half()`` move it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.published import text_prompt
from contextmri_core.errors import ConfigError
from contextmri_core.prior.encoders.base import ConditionEncoder
from contextmri_core.prior.encoders.config import ClipEncoderConfig, EncoderConfig

logger = logging.getLogger(__name__)

TEXT_ENCODER_DIR = "text_encoder"
TOKENIZER_DIR = "tokenizer"


def resolve_clip_dir(path: str, root: Optional[Path] = None) -> Path:
    """``path`` itself if absolute, else ``root / path`` (``root`` defaults to the cwd)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or root is None else Path(root) / p


def load_clip(directory: Path):
    """``(CLIPTokenizer, CLIPTextModel)`` from ``directory``, offline; ``ConfigError`` naming
    the directory when it is missing or unreadable."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import CLIPTextModel, CLIPTokenizer

    directory = Path(directory)
    for sub in (TEXT_ENCODER_DIR, TOKENIZER_DIR):
        if not (directory / sub).is_dir():
            raise ConfigError(f"encoder.clip.path: {directory / sub} does not exist; point the "
                              f"path at a directory with {TEXT_ENCODER_DIR}/ and {TOKENIZER_DIR}/ "
                              "(written by save_pretrained)")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(directory / TOKENIZER_DIR),
                                                  local_files_only=True)
        model = CLIPTextModel.from_pretrained(str(directory / TEXT_ENCODER_DIR),
                                              local_files_only=True)
    except Exception as exc:  # transformers/safetensors raise many unrelated types
        raise ConfigError(f"encoder.clip.path: cannot load CLIP from {directory}: {exc}; "
                          "re-export it with save_pretrained") from exc
    logger.info("CLIP text encoder loaded from %s (hidden size %d)", directory,
                model.config.hidden_size)
    return tokenizer, model


class ClipTextEncoder(ConditionEncoder):
    """``metadata -> last_hidden_state (B, max_length, hidden_size)`` of the frozen CLIP."""

    def __init__(self, config: ClipEncoderConfig, root: Optional[Path] = None,
                 loaded: Optional[tuple] = None) -> None:
        """``loaded``: an already loaded ``(tokenizer, text model)`` to share (one CLIP for
        several UNets of a checkpoint); else it is loaded from ``config.path``."""
        super().__init__()
        self.clip_config = config
        self.source = resolve_clip_dir(config.path, root)
        tokenizer, model = loaded if loaded is not None else load_clip(self.source)
        limit = int(model.config.max_position_embeddings)
        if config.max_length > limit:
            raise ConfigError(f"encoder.clip.max_length {config.max_length} exceeds the model's "
                              f"{limit} positions ({self.source}): use <= {limit}")
        model.requires_grad_(False)
        model.eval()
        object.__setattr__(self, "text_model", model)  # not a submodule: see module docstring
        self.tokenizer = tokenizer
        self.dim = int(model.config.hidden_size)
        self.seq_len = int(config.max_length)
        self._uncond: Dict[Tuple[str, torch.dtype], torch.Tensor] = {}

    @property
    def config(self) -> EncoderConfig:
        """``EncoderConfig`` that rebuilds this encoder."""
        return EncoderConfig(kind="clip", clip=self.clip_config)

    @property
    def device(self) -> torch.device:
        return next(self.text_model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.text_model.parameters()).dtype

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.text_model._apply(fn)
        self._uncond.clear()
        return self

    def train(self, mode: bool = True):
        """The text model stays in eval mode (frozen)."""
        super().train(mode)
        self.text_model.eval()
        return self

    def prompts(self, metadata: Sequence[Optional[ScanMetadata]]) -> List[str]:
        """One prompt per element; "" for ``None``."""
        cfg = self.clip_config
        return ["" if m is None else text_prompt(m, cfg.prompt_style, cfg.demographic)
                for m in metadata]

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """``(N, max_length, dim)`` CLIP ``last_hidden_state`` of prompts padded to max_length."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.seq_len,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_model(ids.to(self.device)).last_hidden_state

    def unconditional(self, batch_size: int) -> torch.Tensor:
        """``(B, max_length, dim)``: CLIP(""), computed once per device and dtype."""
        key = (str(self.device), self.dtype)
        if key not in self._uncond:
            self._uncond[key] = self.encode_prompts([""])
        return self._uncond[key].expand(batch_size, -1, -1).clone()

    def forward(self, metadata: Sequence[Optional[ScanMetadata]],
                drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, max_length, dim)``; dropped elements and empty prompts are exactly
        ``unconditional``."""
        prompts = self.prompts(metadata)
        keep = [p != "" for p in prompts]
        if drop is not None:
            keep = [k and not bool(d) for k, d in zip(keep, drop.tolist())]
        out = self.unconditional(len(prompts))
        rows = [i for i, k in enumerate(keep) if k]
        if rows:
            out[rows] = self.encode_prompts([prompts[i] for i in rows])
        return out

    def save_pretrained(self, directory: Path) -> Path:
        """Write ``text_encoder/`` and ``tokenizer/`` under ``directory``; returns it."""
        directory = Path(directory)
        self.text_model.save_pretrained(str(directory / TEXT_ENCODER_DIR))
        self.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
        return directory
