"""``contextmri info --model DIR``: the model card (``io.model_card``) plus the sampler settings
the model runs with, as text or JSON; with files, the UNet and prompt per slice."""

from __future__ import annotations

from typing import Any, Dict, Optional

from contextmri_core.data.published import SKM_TEA_UNET, choose_unet, text_prompt
from contextmri_core.data.scan import RawScan
from contextmri_core.io.models.card import model_card
from contextmri_core.recon.presets import describe, preset_config, preset_name


def full_card(path: str, preset: str = "auto") -> Dict[str, Any]:
    """``model_card`` plus ``preset`` and ``settings`` (what replay/serve would run with)."""
    card = model_card(path)
    convention = card["convention"]
    card["preset"] = preset_name(convention, preset)
    card["settings"] = describe(preset_config(convention, preset), convention)
    return card


def _unets(card: Dict[str, Any]) -> str:
    return ", ".join(f"{u['name']} ({'x'.join(str(n) for n in u['sample_size'])}, "
                     f"{u['parameters'] / 1e6:.1f}M parameters)" for u in card["unets"])


def _encoder(card: Dict[str, Any]) -> str:
    enc = card["encoder"]
    if enc.get("kind") == "structured":
        return "structured metadata encoder (contextmri)"
    text = (f"{enc['kind']}: CLIP text encoder (hidden size {enc.get('hidden_size')}, "
            f"{enc.get('max_length')} tokens), {enc.get('prompt_style', 'contextmri')} prompts")
    return text


def _schedule(card: Dict[str, Any]) -> str:
    s = card["schedule"]
    return (f"DDPM {s['beta_schedule']} beta {s['beta_start']:g}..{s['beta_end']:g}, "
            f"{s['num_train_timesteps']} steps, {s['prediction_type']}; DDIM spacing "
            f"{s.get('timestep_spacing', 'leading')}, offset {s.get('steps_offset', 0)}")


def _convention(card: Dict[str, Any]) -> str:
    if card["convention"] == "published":
        return ("published: readout along image rows, centred sample-size crops scaled to a "
                "99th percentile of 1 over the crop")
    return "contextmri: E1 along rows, the whole grid, 99th percentile over the grid"


def _settings(card: Dict[str, Any]) -> str:
    s = card["settings"]
    return (f"{card['preset']}: {s['sampler']} {s['steps']} steps ({s['timesteps']} timesteps), "
            f"eta {s['eta']:g}, xi {s['xi']:g}, {s['cg_iterations']} CG iterations, CFG "
            f"{s['guidance']:g} ({s['cfg_rule']}), clip {s['clip']:g} (0 = off), support mask "
            f"{'on' if s['support_mask'] else 'off'}, grid {s['grid']}, {s['precision']} on GPUs")


def format_card(card: Dict[str, Any]) -> str:
    """The card as indented text lines."""
    kind = ("published ContextMRI release" if card["kind"] == "published"
            else "contextmri checkpoint")
    forced = f" (this path names the {card['forced_unet']} UNet)" if card["forced_unet"] else ""
    return "\n".join([
        f"{card['path']}: {kind}{forced}",
        f"  UNets:      {_unets(card)}",
        f"  encoder:    {_encoder(card)}",
        f"  schedule:   {_schedule(card)}",
        f"  convention: {_convention(card)}",
        f"  settings:   {_settings(card)}",
    ])


def prompts_for(card: Dict[str, Any], scan: RawScan) -> Optional[Dict[str, Any]]:
    """The UNet the model would use for ``scan`` and each slice's prompt in its vocabulary
    (None for a model without a text encoder)."""
    enc = card["encoder"]
    if enc.get("kind") == "structured":
        return None
    names = [u["name"] for u in card["unets"]]
    unet = card["forced_unet"] or (choose_unet(scan.metadata, names) if card["kind"] == "published"
                                   else names[0])
    style = enc.get("prompt_style", "contextmri")
    demographic = unet == SKM_TEA_UNET if style == "published" else bool(
        (enc.get("clip") or {}).get("demographic"))
    return {"unet": unet, "slices": [
        {"slice": sl.metadata.slice_index, "prompt": text_prompt(sl.metadata, style, demographic)}
        for sl in scan.slices]}
