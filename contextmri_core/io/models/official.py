"""Model folders: our checkpoint format or the published ContextMRI release, one entry point.

The published release (Hugging Face DHCAI/ContextMRI, MIT licence) is a folder::

    MRI_checkpoint/
      model_index.json
      fastmri/         UNet2DConditionModel (config.json + weights), sample_size 320: fastMRI
                       brain and knee
      skm-tea/         the same for SKM-TEA qDESS knees, sample_size 512
      scheduler/       scheduler_config.json (DDPMScheduler)
      text_encoder/    CLIPTextModel
      tokenizer/       CLIPTokenizer

There is no ``unet/`` folder: the published code loads ``subfolder="fastmri"`` or
``"skm-tea"`` (a ``unet/`` folder, which the release's ``convert_checkpoint.py`` writes for a
model trained anew, counts as one more UNet). A path to one UNet folder loads that UNet with
its parent's scheduler, text encoder and tokenizer. Every published UNet becomes a
``DiffusionPrior`` of the published convention (readout along rows, centred crops of its
sample size, the published prompt vocabulary; the SKM-TEA UNet with the demographic form).
Everything is read from local files only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from contextmri_core.data.published import FASTMRI_UNET, SKM_TEA_UNET
from contextmri_core.errors import ConfigError, ContextMRIError
from contextmri_core.io.models.checkpoint import (
    ENCODER_WEIGHTS, UNET_WEIGHTS, YAML_NAME, CheckpointError, PathLike, load_prior, place,
)
from contextmri_core.prior.encoders.clip import ClipTextEncoder, load_clip
from contextmri_core.prior.encoders.config import ClipEncoderConfig
from contextmri_core.prior.model import DiffusionPrior, Normalisation
from contextmri_core.prior.schedule import ScheduleConfig

log = logging.getLogger(__name__)

SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
MODEL_INDEX = "model_index.json"
_SHARED = (SCHEDULER_CONFIG, "text_encoder/", "tokenizer/")
LAYOUTS = (
    f"either a contextmri checkpoint ({YAML_NAME}, {UNET_WEIGHTS}, {ENCODER_WEIGHTS}) or the "
    f"published ContextMRI release (MRI_checkpoint/: {FASTMRI_UNET}/ and/or {SKM_TEA_UNET}/ UNet "
    f"folders with config.json + weights, {SCHEDULER_CONFIG}, text_encoder/, tokenizer/, "
    f"{MODEL_INDEX}) or one UNet folder of it"
)


@dataclass(frozen=True)
class ModelFolder:
    """What a model directory is: ``kind`` "contextmri" or "published"; ``root`` the folder
    holding the shared parts; ``unets`` the UNet subfolders of a published one; ``unet`` the
    subfolder the given path named (a path to one UNet), else None."""

    path: Path
    kind: str
    root: Path
    unets: Tuple[str, ...] = ()
    unet: Optional[str] = None


def _json(path: Path) -> Dict[str, Any]:
    """A JSON object from ``path``, or a ``CheckpointError`` naming the file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(path, f"cannot be read as JSON ({err})") from err
    if not isinstance(doc, dict):
        raise CheckpointError(path, "is not a JSON object")
    return doc


def is_unet_dir(path: Path) -> bool:
    """True for a folder whose ``config.json`` describes a ``UNet2DConditionModel``."""
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(doc, dict) and (doc.get("_class_name") == "UNet2DConditionModel"
                                      or {"block_out_channels", "in_channels"} <= set(doc))


def _unet_names(root: Path) -> Tuple[str, ...]:
    """UNet subfolders of ``root``: fastmri, skm-tea first, then any other, by name."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and is_unet_dir(d))
    known = [n for n in (FASTMRI_UNET, SKM_TEA_UNET) if n in found]
    return tuple(known + [n for n in found if n not in known])


def _looks_published(root: Path) -> bool:
    return any((root / p).exists() for p in (*_SHARED, MODEL_INDEX)) or bool(_unet_names(root))


def inspect_model(path: PathLike) -> ModelFolder:
    """Classify ``path``; ``CheckpointError`` naming both layouts (and what is missing) when
    it is neither."""
    given = Path(path).expanduser()
    if not given.is_dir():
        raise CheckpointError(given, f"no such model directory: it must be {LAYOUTS}")
    if (given / YAML_NAME).is_file():
        return ModelFolder(given, "contextmri", given)
    root, unet = given, None
    if is_unet_dir(given):
        root, unet = given.parent, given.name
    if not _looks_published(root):
        raise CheckpointError(given, f"is not a model directory: it must be {LAYOUTS}")
    unets = _unet_names(root)
    missing = [p for p in _SHARED if not (root / p).exists()] + ([] if unets else
                                                                  ["a UNet folder"])
    if missing:
        raise CheckpointError(given, f"looks like the published ContextMRI release but lacks "
                                     f"{', '.join(missing)}: it must be {LAYOUTS}")
    return ModelFolder(given, "published", root, unets, unet)


def default_unet(folder: ModelFolder) -> str:
    """The UNet loaded when nothing chooses one: the named subfolder, else ``fastmri``, else
    the first."""
    if folder.unet is not None:
        return folder.unet
    return FASTMRI_UNET if FASTMRI_UNET in folder.unets else folder.unets[0]


class PublishedCheckpoint:
    """A published folder on ``device``: CLIP loaded once, each UNet when first asked for."""

    def __init__(self, folder: ModelFolder, device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.folder, self.device, self.dtype = folder, device, dtype
        self.schedule = load_schedule(folder.root / SCHEDULER_CONFIG)
        self._clip: Optional[tuple] = None
        self._priors: Dict[str, DiffusionPrior] = {}

    def _shared_clip(self) -> tuple:
        if self._clip is None:
            try:
                self._clip = load_clip(self.folder.root)
            except ContextMRIError as err:
                raise CheckpointError(self.folder.root, f"cannot load the CLIP text encoder "
                                      f"from text_encoder/ and tokenizer/ ({err})") from err
        return self._clip

    def is_loaded(self, unet: Optional[str] = None) -> bool:
        return (unet or default_unet(self.folder)) in self._priors

    def prior(self, unet: Optional[str] = None) -> DiffusionPrior:
        """The ``DiffusionPrior`` of UNet subfolder ``unet`` (default: :func:`default_unet`)."""
        name = unet or default_unet(self.folder)
        if name not in self.folder.unets:
            raise ConfigError(f"unet {name!r}: {self.folder.root} holds "
                              f"{', '.join(self.folder.unets)}; use one of them")
        if name not in self._priors:
            self._priors[name] = self._load(name)
        return self._priors[name]

    def _load(self, name: str) -> DiffusionPrior:
        root = self.folder.root
        unet = load_unet(root / name)
        clip_cfg = ClipEncoderConfig(path=".", prompt_style="published",
                                     demographic=name == SKM_TEA_UNET)
        encoder = ClipTextEncoder(clip_cfg, root=root, loaded=self._shared_clip())
        width = unet.config.encoder_hid_dim or unet.config.cross_attention_dim
        if encoder.dim != width:
            raise CheckpointError(root / name / "config.json", f"the UNet expects condition "
                                  f"tokens of width {width} but text_encoder/ gives {encoder.dim}")
        size = unet.config.sample_size
        image_size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))
        info = {"source": "published ContextMRI release", "path": str(root), "unet": name,
                "diffusers_version": unet.config.get("_diffusers_version")}
        norm = Normalisation(percentile=0.99, image_size=image_size, convention="published")
        prior = DiffusionPrior(unet, encoder, self.schedule, norm, info=info)
        log.info("loaded the %r UNet of the published ContextMRI checkpoint %s", name, root)
        return place(prior, self.device, self.dtype)


class ModelHandle:
    """Any model folder, loaded lazily: ``prior(unet)`` gives a ``DiffusionPrior``."""

    def __init__(self, path: PathLike, device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.folder = inspect_model(path)
        self.device, self.dtype = device, dtype
        self._ours: Optional[DiffusionPrior] = None
        self._published = (PublishedCheckpoint(self.folder, device, dtype)
                           if self.folder.kind == "published" else None)

    @property
    def unets(self) -> Tuple[str, ...]:
        """The UNets to choose from (empty for our format and for a path to one UNet)."""
        return () if self.folder.unet is not None else self.folder.unets

    def is_loaded(self, unet: Optional[str] = None) -> bool:
        """True when ``prior(unet)`` returns without loading anything."""
        if self._published is not None:
            return self._published.is_loaded(unet)
        return self._ours is not None

    def prior(self, unet: Optional[str] = None) -> DiffusionPrior:
        if self._published is not None:
            return self._published.prior(unet)
        if unet is not None:
            raise ConfigError(f"unet {unet!r}: {self.folder.path} is a contextmri checkpoint "
                              f"with one UNet; --unet applies to the published release only")
        if self._ours is None:
            self._ours = load_prior(self.folder.root, device=self.device, dtype=self.dtype)
        return self._ours


def load_any(path: PathLike, device: Union[str, torch.device] = "cpu",
             dtype: torch.dtype = torch.float32, unet: Optional[str] = None) -> DiffusionPrior:
    """The prior in model folder ``path`` (either layout); ``unet`` picks a published UNet."""
    return ModelHandle(path, device, dtype).prior(unet)


def load_official(directory: PathLike, device: Union[str, torch.device] = "cpu",
                  dtype: torch.dtype = torch.float32, unet: Optional[str] = None
                  ) -> DiffusionPrior:
    """A published ContextMRI checkpoint (or one UNet folder of it) as a ``DiffusionPrior``."""
    folder = inspect_model(directory)
    if folder.kind != "published":
        raise CheckpointError(folder.path, "is a contextmri checkpoint, not the published "
                                           "release: load it with load_prior or load_any")
    return PublishedCheckpoint(folder, device, dtype).prior(unet)


def load_unet(path: Path) -> torch.nn.Module:
    """``UNet2DConditionModel.from_pretrained`` from local files, checked for ContextMRI's
    2-channel epsilon setup."""
    from diffusers import UNet2DConditionModel

    try:
        unet = UNet2DConditionModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        raise CheckpointError(path, f"cannot load the UNet ({err}): {path.name}/ must hold "
                                    f"config.json and diffusion_pytorch_model.safetensors "
                                    f"(or .bin)") from err
    cin, cout = unet.config.in_channels, unet.config.out_channels
    if cin != 2 or cout != 2:
        raise CheckpointError(path / "config.json", f"in_channels={cin}, out_channels={cout}: "
                                                    f"a ContextMRI UNet has 2 (real, imag)")
    return unet.eval()


def load_schedule(path: Path) -> ScheduleConfig:
    """The training schedule from ``scheduler_config.json`` (epsilon prediction only)."""
    cfg = _json(path)
    if cfg.get("trained_betas") is not None or cfg.get("rescale_betas_zero_snr"):
        raise CheckpointError(path, "trained_betas / rescale_betas_zero_snr are not supported: "
                                    "use a beta_schedule")
    try:
        return ScheduleConfig.from_diffusers(cfg)
    except (ContextMRIError, TypeError, ValueError) as err:
        raise CheckpointError(path, f"unsupported schedule: {err}") from err


def unet_config(folder: ModelFolder, name: str) -> Dict[str, Any]:
    """The ``config.json`` of published UNet ``name``."""
    return _json(folder.root / name / "config.json")


def count_unet_parameters(config: Dict[str, Any]) -> int:
    """Parameters of a ``UNet2DConditionModel`` with this config, built on the meta device
    (no memory, no weights read)."""
    from diffusers import UNet2DConditionModel

    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(kwargs)
    return sum(p.numel() for p in unet.parameters())


def missing_parts(root: Path) -> List[str]:
    """The shared parts of the published layout that ``root`` lacks (empty when complete)."""
    return [name for name in _SHARED if not (root / name).exists()]
