"""The project's checkpoint format: one directory that carries weights, schedule and provenance.

Layout (``format_version: 1``)::

    model/
      contextmri.yaml        human-readable: format_version, contextmri_version, unet (the
                             diffusers kwargs), encoder (EncoderConfig.to_dict()), schedule,
                             normalisation, info (free-form provenance)
      unet.safetensors       the UNet's state dict
      encoder.safetensors    the encoder's own tensors (never the frozen CLIP part)
      text_encoder/          only with a CLIP part: its ``save_pretrained`` output, referred to
      tokenizer/             from the yaml relatively (path ".")

A checkpoint is written into a hidden temporary directory next to the target and renamed into
place, so a failed save never leaves a half-written model behind. Loading reads local files
only and names the file (and the tensor) that does not fit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Union

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from contextmri_core import __version__
from contextmri_core.errors import ConfigError, ContextMRIError, InputFileError
from contextmri_core.prior.encoders.clip import ClipTextEncoder
from contextmri_core.prior.encoders.factory import EncoderConfig, build_encoder
from contextmri_core.prior.model import DiffusionPrior, Normalisation
from contextmri_core.prior.presets import build_unet
from contextmri_core.prior.schedule import ScheduleConfig

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
YAML_NAME = "contextmri.yaml"
UNET_WEIGHTS = "unet.safetensors"
ENCODER_WEIGHTS = "encoder.safetensors"
CLIP_DIR = "."  # the CLIP part lives in <checkpoint>/text_encoder and <checkpoint>/tokenizer
_SECTIONS = ("unet", "encoder", "schedule", "normalisation")
_HEADER = (
    "# contextmri prior checkpoint. Weights: unet.safetensors, encoder.safetensors\n"
    "# (+ text_encoder/, tokenizer/ when the encoder has a CLIP part). Load with\n"
    "# contextmri_core.io.models.checkpoint.load_prior(<this directory>).\n"
)

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(InputFileError):
    """A model directory that cannot be written or read: names the file and the fix."""


# ----------------------------------------------------------------------------------- saving

def save_prior(prior: DiffusionPrior, directory: PathLike, overwrite: bool = False) -> Path:
    """Write ``prior`` as a checkpoint directory, atomically; returns its path.

    An existing ``directory`` is replaced only with ``overwrite=True``.
    """
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise CheckpointError(target, "exists and is not a directory: choose another path")
    if target.exists() and not overwrite:
        raise CheckpointError(target, "already exists: pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the model from a recon service user
        _write_into(prior, tmp)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved prior checkpoint to %s", target)
    return target


def _write_into(prior: DiffusionPrior, out: Path) -> None:
    """Every file of a checkpoint, written into the (empty) directory ``out``."""
    save_file(_detached(prior.unet.state_dict()), str(out / UNET_WEIGHTS),
              metadata={"format": "pt"})
    for clip in _clip_parts(prior.encoder):
        clip.save_pretrained(out / CLIP_DIR)
    # the frozen CLIP text model is outside the encoder's state dict: this is the rest
    save_file(_detached(prior.encoder.state_dict()), str(out / ENCODER_WEIGHTS),
              metadata={"format": "pt"})
    for name in (UNET_WEIGHTS, ENCODER_WEIGHTS):  # safetensors writes 0600: a recon service
        os.chmod(out / name, 0o644)               # user must be able to read the model
    doc = {
        "format_version": FORMAT_VERSION,
        "contextmri_version": __version__,
        "unet": _unet_kwargs(prior.unet),
        "encoder": _relative_clip(prior.encoder.config).to_dict(),
        "schedule": prior.schedule.to_dict(),
        "normalisation": prior.normalisation.to_dict(),
        "info": _plain(prior.info),
    }
    text = yaml.dump(_plain(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=100, allow_unicode=True)
    (out / YAML_NAME).write_text(_HEADER + text, encoding="utf-8")


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is set aside first and restored if
    the rename fails."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _detached(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CPU copies that are contiguous and share no memory (what safetensors requires)."""
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def _clip_parts(encoder: nn.Module) -> List[ClipTextEncoder]:
    """The CLIP text encoders inside ``encoder`` (at most one: it owns ``text_encoder/``)."""
    parts = [m for m in encoder.modules() if isinstance(m, ClipTextEncoder)]
    if len(parts) > 1:
        raise ConfigError(f"an encoder with {len(parts)} CLIP parts cannot be saved: "
                          "a checkpoint holds one text_encoder/")
    return parts


def _relative_clip(cfg: EncoderConfig) -> EncoderConfig:
    """``cfg`` with its CLIP directory pointing at the checkpoint itself."""
    if cfg.clip is None:
        return cfg
    return dataclasses.replace(cfg, clip=dataclasses.replace(cfg.clip, path=CLIP_DIR))


def _unet_kwargs(unet: nn.Module) -> Dict[str, Any]:
    """The diffusers constructor kwargs of ``unet`` (no private ``_`` entries)."""
    return {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}


class _Dumper(yaml.SafeDumper):
    """Block-style mappings; short lists of scalars on one line (``[8, 8, 8, 8]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    scalar = all(v is None or isinstance(v, (bool, int, float, str)) for v in data)
    flow = scalar and sum(len(str(v)) + 2 for v in data) <= 80
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def _plain(obj: Any) -> Any:
    """``obj`` as plain YAML types: tuples -> lists, paths/others -> str, tensors -> lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return str(obj)


# ---------------------------------------------------------------------------------- loading

def load_prior(directory: PathLike, device: Union[str, torch.device] = "cpu",
               dtype: torch.dtype = torch.float32) -> DiffusionPrior:
    """The prior stored in checkpoint ``directory``, on ``device`` in ``dtype``, in eval mode."""
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(root, "no such model directory: save one with save_prior, or "
                                    "check the path")
    doc = read_manifest(root)
    yaml_path = root / YAML_NAME
    unet = _build(yaml_path, doc, "unet", lambda d: build_unet(dict(d)))
    _load_weights(unet, root / UNET_WEIGHTS)
    encoder = _build(yaml_path, doc, "encoder",
                     lambda d: build_encoder(EncoderConfig.from_dict(d), root=root))
    _load_weights(encoder, root / ENCODER_WEIGHTS)
    schedule = _build(yaml_path, doc, "schedule", lambda d: ScheduleConfig(**d))
    norm = _build(yaml_path, doc, "normalisation", Normalisation.from_dict)
    info = doc.get("info") or {}
    prior = DiffusionPrior(unet, encoder, schedule, norm,
                           info=info if isinstance(info, dict) else {"info": info})
    return place(prior, device, dtype)


def place(prior: DiffusionPrior, device: Union[str, torch.device],
          dtype: torch.dtype) -> DiffusionPrior:
    """Move ``prior`` to ``device``; cast the networks (not the schedule buffer) to ``dtype``;
    eval mode."""
    prior.to(device)
    if next(prior.unet.parameters()).dtype != dtype:  # diffusers warns on any dtype cast
        prior.unet.to(dtype)
    prior.encoder.to(dtype)
    return prior.eval()


def read_manifest(root: Path) -> Dict[str, Any]:
    """The parsed ``contextmri.yaml`` of checkpoint ``root``, format and sections checked."""
    path = root / YAML_NAME
    if not path.is_file():
        raise CheckpointError(path, f"missing: a contextmri checkpoint directory holds "
                                    f"{YAML_NAME}, {UNET_WEIGHTS} and {ENCODER_WEIGHTS}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CheckpointError(path, f"cannot be read as YAML ({err})") from err
    if not isinstance(doc, dict):
        raise CheckpointError(path, "is not a YAML mapping: the file is damaged")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(path, f"format_version {version!r} is missing or not an integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(path, f"format_version {version} was written by a newer contextmri "
                                    f"({doc.get('contextmri_version')}); this one ({__version__}) "
                                    f"reads up to {FORMAT_VERSION}: upgrade contextmri")
    if version < 1:
        raise CheckpointError(path, f"unknown format_version {version}: expected {FORMAT_VERSION}")
    missing = [s for s in _SECTIONS if not isinstance(doc.get(s), dict)]
    if missing:
        raise CheckpointError(path, f"section(s) {', '.join(missing)} missing or not a mapping")
    return doc


def _build(yaml_path: Path, doc: Mapping[str, Any], section: str,
           make: Callable[[Any], Any]) -> Any:
    """``make(doc[section])`` with any configuration error reported against the yaml."""
    try:
        return make(doc[section])
    except CheckpointError:
        raise
    except (ContextMRIError, TypeError, ValueError, KeyError) as err:
        raise CheckpointError(yaml_path, f"section {section!r} does not describe a valid "
                                         f"{section} ({type(err).__name__}: {err})") from err


def _load_weights(module: nn.Module, path: Path) -> None:
    """Load ``path`` into ``module`` after checking every tensor's name and shape."""
    if not path.is_file():
        raise CheckpointError(path, "missing: the checkpoint is incomplete; save it again")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(path, f"corrupt or truncated safetensors file ({err})") from err
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    for names, what in ((missing, "missing"), (unexpected, "not part of the model")):
        if names:
            raise CheckpointError(path, f"tensor {names[0]!r} is {what} ({len(names)} such): "
                                        f"the weights do not fit {YAML_NAME}")
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise CheckpointError(path, f"tensor {name!r} has shape {tuple(tensors[name].shape)} "
                                        f"but {YAML_NAME} describes {tuple(ref.shape)}")
    module.load_state_dict(tensors, strict=True)
