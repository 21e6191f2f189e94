"""Warm start (``fit.init_from``) from a model folder (our checkpoint, or a UNet of the
published ContextMRI release) whose encoder may lack fields the new one has (e.g. the geometry tokens added after the shipped default model was trained).

The checkpoint loads as saved; when the run asks for another encoder (``fit.encoder``), a
fresh prior is built with it (the checkpoint's UNet layout, the new token width) and every
tensor whose name and shape match is copied; the structured encoder's per-field rows are
matched by field name (``StructuredMetadataEncoder.adopt_from``). Whatever had no match keeps
its fresh initialisation and is logged.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional, Tuple, Union

import torch
from torch import nn

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.published import choose_unet
from contextmri_core.io.models.official import ModelHandle
from contextmri_core.prior.encoders.factory import EncoderConfig, build_encoder
from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.prior.presets import build_unet

log = logging.getLogger(__name__)


@torch.no_grad()
def copy_matching(dst: nn.Module, src: nn.Module) -> List[str]:
    """Copy ``src``'s tensors into ``dst`` where name and shape match; returns the names of
    ``dst`` left as they were."""
    theirs = src.state_dict()
    fresh = []
    for name, value in dst.state_dict().items():
        other = theirs.get(name)
        if other is not None and other.shape == value.shape:
            value.copy_(other)
        else:
            fresh.append(name)
    return fresh


def _encoder_fresh(new, old) -> List[str]:
    """Copy the encoder; field-wise when both can (structured), else by name and shape."""
    fresh = copy_matching(new, old)
    for mine, theirs in ((new, old), (getattr(new, "structured", None), getattr(old, "structured", None))):
        if (hasattr(mine, "adopt_from") and type(mine) is type(theirs)
                and mine.dim == theirs.dim):  # rows of another width cannot be copied
            fields = mine.adopt_from(theirs)
            fresh = [n for n in fresh if not n.endswith(("missing", "field_type"))]
            fresh += [f"field {f}" for f in fields]
    return fresh


def load_init(directory: str, unet: Optional[str] = None,
              meta: Optional[ScanMetadata] = None) -> DiffusionPrior:
    """The prior fine-tuning starts from: our checkpoint, or a published UNet (``unet``, else
    the one the training data's first slice ``meta`` calls for: ``fastmri`` or ``skm-tea``)."""
    handle = ModelHandle(directory)
    if handle.unets:
        unet = unet or choose_unet(meta, handle.unets)
    return handle.prior(unet)


def warm_start(source: Union[str, DiffusionPrior], encoder: Optional[EncoderConfig] = None,
               image_size: Optional[Tuple[int, int]] = None) -> Tuple[DiffusionPrior, List[str]]:
    """The prior of ``source`` (a model folder or a loaded prior; with ``encoder`` instead of
    its own when given and different) and the names of the parameters that kept their fresh
    initialisation."""
    loaded = isinstance(source, DiffusionPrior)
    old = source if loaded else load_init(str(source))
    directory = "the initial model" if loaded else source
    norm = (dataclasses.replace(old.normalisation, image_size=tuple(image_size)) if image_size
            else old.normalisation)  # its percentile and convention (ours or the published one)
    if encoder is None or encoder == old.encoder.config:
        return DiffusionPrior(old.unet, old.encoder, old.schedule, norm, info=old.info), []
    enc = build_encoder(encoder)
    kwargs = {k: v for k, v in dict(old.unet.config).items() if not k.startswith("_")}
    unet = old.unet
    if kwargs.get("encoder_hid_dim") != enc.dim:
        unet = build_unet(dict(kwargs, encoder_hid_dim=enc.dim))
        fresh = [f"unet.{n}" for n in copy_matching(unet, old.unet)]
    else:
        fresh = []
    fresh += [f"encoder.{n}" for n in _encoder_fresh(enc, old.encoder)]
    log.info("warm start from %s: %s", directory,
             f"new (fresh initialisation): {', '.join(fresh)}" if fresh else "every tensor matched")
    prior = DiffusionPrior(unet, enc, old.schedule, norm, info=old.info)
    return prior, fresh

