"""What a model folder holds, read from its config files only (no weights are loaded):
kind, UNets with sample size and parameter count, encoder, schedule and convention. Used by
``contextmri info --model``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from contextmri_core.data.published import SKM_TEA_UNET
from contextmri_core.io.models.checkpoint import CheckpointError, PathLike, read_manifest
from contextmri_core.io.models.official import (
    SCHEDULER_CONFIG, count_unet_parameters, inspect_model, load_schedule, unet_config,
)


def _sample_size(cfg: Dict[str, Any]) -> List[int]:
    size = cfg.get("sample_size")
    return [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size), int(size)]


def _clip_card(root: Path) -> Dict[str, Any]:
    """Hidden size and token length of ``root/text_encoder`` (config.json) and tokenizer."""
    card: Dict[str, Any] = {"kind": "clip", "path": str(root / "text_encoder")}
    try:
        cfg = json.loads((root / "text_encoder" / "config.json").read_text(encoding="utf-8"))
        card.update(hidden_size=cfg.get("hidden_size"),
                    max_length=cfg.get("max_position_embeddings"))
    except (OSError, ValueError) as err:
        raise CheckpointError(root / "text_encoder" / "config.json",
                              f"cannot be read ({err})") from err
    return card


def _published(folder) -> Dict[str, Any]:
    names = (folder.unet,) if folder.unet else folder.unets
    unets = []
    for name in names:
        cfg = unet_config(folder, name)
        unets.append({"name": name, "sample_size": _sample_size(cfg),
                      "parameters": count_unet_parameters(cfg),
                      "prompt": "SKM-TEA demographic form" if name == SKM_TEA_UNET
                      else "fastMRI form"})
    encoder = dict(_clip_card(folder.root), prompt_style="published")
    return {"unets": unets, "encoder": encoder,
            "schedule": load_schedule(folder.root / SCHEDULER_CONFIG).to_dict(),
            "convention": "published"}


def _ours(folder) -> Dict[str, Any]:
    doc = read_manifest(folder.root)
    norm = doc["normalisation"]
    unet = {"name": "unet", "sample_size": [int(n) for n in norm["image_size"]],
            "parameters": count_unet_parameters(doc["unet"])}
    encoder = dict(doc["encoder"])
    if encoder.get("kind") in ("clip", "fused") and isinstance(encoder.get("clip"), dict):
        encoder.update(_clip_card(folder.root), kind=doc["encoder"]["kind"],
                       prompt_style=encoder["clip"].get("prompt_style", "contextmri"))
    return {"unets": [unet], "encoder": encoder, "schedule": doc["schedule"],
            "convention": norm.get("convention", "contextmri")}


def model_card(path: PathLike) -> Dict[str, Any]:
    """JSON-ready description of model folder ``path`` (``CheckpointError`` when it is
    neither layout)."""
    folder = inspect_model(path)
    body = _published(folder) if folder.kind == "published" else _ours(folder)
    return {"path": str(folder.path), "kind": folder.kind, "root": str(folder.root),
            "forced_unet": folder.unet, **body}
