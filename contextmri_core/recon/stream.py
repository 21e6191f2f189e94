"""Reconstruction of a live acquisition stream as pure generator stages (STYLE habit 8).

``records -> assemble -> batches -> reconstruct_batches -> SliceOutcome``; the Gadgetron
gadgets, the stream server and file replay chain the same stages. Nothing here touches a
socket or ismrmrd: the wire lives in ``contextmri_core.io.mrd.stream``.

The stream is assembled at its end (CLOSE): a 2D scan is small, and repetitions, separate
ACS lines and interleaved slices are only complete then. Slices are reconstructed in batches
of ``batch_size`` in ascending slice order, exactly as an in-process ``DiffusionReconstructor``
call over the whole scan would (same seed, same chunks, same images). When the primary
reconstructor fails, the classical fallback (CG-SENSE by default) reconstructs the batch and
each outcome carries the error text, which the caller must report (ERROR frame).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from contextmri_core.data.assembly import AcqRecord, assemble_slices
from contextmri_core.data.encoding import EncodingInfo, parse_encoding
from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.data.header import parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.data.scan import SliceData
from contextmri_core.errors import ConfigError, ContextMRIError
from contextmri_core.recon.base import Reconstructor
from contextmri_core.recon.classical import SenseRecon, ZeroFilledRecon
from contextmri_core.recon.prepare import PrepConfig, SliceBatch, prepare_slices
from contextmri_core.recon.slice_checks import MadeImages, checked_images, fallback_images
from contextmri_core.sampling.dds import Progress

log = logging.getLogger(__name__)
METHODS = ("dds", "dps", "sense", "zero_filled")
FALLBACKS = ("sense", "zero_filled", "none")


PRESETS = ("auto", "paper", "contextmri")
GRIDS = ("auto", "full", "window", "window-zero", "pad")
PRECISIONS = ("fp32", "fp16", "bf16")
#: Steps of the ``contextmri`` preset in a stream (the ``paper`` preset has its own 100).
STREAM_STEPS = 25


@dataclass(frozen=True)
class StreamSettings:
    """Settings of a streamed reconstruction; pipeline XML properties, FIRE JSON parameters
    and CLI flags all map onto this dataclass (:meth:`from_properties`). ``None`` in a
    sampler field means "the preset's value" (``recon.presets``): the paper's for a published
    checkpoint, ours otherwise."""

    model: Optional[str] = None  # checkpoint directory; None = the shipped default model
    method: str = "dds"  # dds | dps | sense | zero_filled
    steps: Optional[int] = None  # None: the preset's (paper 100, ours 25 here)
    guidance: Optional[float] = None  # None: the preset's (1)
    seed: int = 0
    batch_size: int = 4
    ensemble: int = 1  # > 1 adds the per-pixel standard deviation (uncertainty) series
    device: str = "auto"  # auto = cuda when present, else cpu
    anatomy: Optional[str] = None
    phase: bool = False
    prewhiten: bool = True
    fallback: str = "sense"  # sense | zero_filled | none
    repetition: Optional[int] = None
    virtual_coils: Optional[int] = None  # SVD coil compression before DDS; None = all coils
    time_budget_s: Optional[float] = None  # per scan; past it the fallback reconstructs the rest
    pacs: Optional[str] = None  # HOST:PORT:AET: also send the images as DICOM (C-STORE)
    calling_aet: str = "CONTEXTMRI"
    outbox: Optional[str] = None  # DICOM outbox folder (default ~/.local/state/contextmri/outbox)
    unet: Optional[str] = None  # published checkpoint: fastmri | skm-tea; None = from the data
    preset: str = "auto"  # auto | paper | contextmri (auto: paper for a published checkpoint)
    grid: str = "auto"  # auto | full | pad | window | window-zero (recon.grid)
    support_mask: Optional[bool] = None  # None: the preset's (paper no, ours yes)
    clip: Optional[float] = None  # None: the preset's (paper 0 = off, ours 3)
    precision: Optional[str] = None  # fp32 | fp16 | bf16 on GPUs; None: the preset's

    def __post_init__(self) -> None:
        checks = (("method", self.method in METHODS, f"use one of {METHODS}"),
                  ("fallback", self.fallback in FALLBACKS, f"use one of {FALLBACKS}"),
                  ("steps", self.steps is None or self.steps >= 1, "use >= 1"),
                  ("guidance", self.guidance is None or self.guidance >= 0, "use >= 0"),
                  ("batch_size", self.batch_size >= 1, "use >= 1"),
                  ("ensemble", self.ensemble >= 1, "use >= 1"),
                  ("time_budget_s", self.time_budget_s is None or self.time_budget_s > 0,
                   "use a positive number of seconds (or none)"),
                  ("virtual_coils", self.virtual_coils is None or self.virtual_coils >= 1,
                   "use >= 1 virtual coils (or none: no coil compression)"),
                  ("preset", self.preset in PRESETS, f"use one of {PRESETS}"),
                  ("grid", self.grid in GRIDS, f"use one of {GRIDS}"),
                  ("clip", self.clip is None or self.clip >= 0, "use >= 0 (0 = off)"),
                  ("precision", self.precision in (None,) + PRECISIONS,
                   f"use one of {PRECISIONS}"))
        for name, ok, fix in checks:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: {fix}")

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], base: Optional["StreamSettings"] = None
                        ) -> "StreamSettings":
        """Settings from string properties (names as the fields, ``-`` or ``_``); unknown
        names are logged and ignored, values that do not convert raise ``ConfigError``."""
        base = base or cls()
        known = {f.name: f for f in fields(cls)}
        changes = {}
        for raw_name, value in props.items():
            name = str(raw_name).replace("-", "_").lower()
            if name not in known:
                log.info("property %r is not a contextmri setting; ignored", raw_name)
                continue
            changes[name] = _convert(name, value, known[name].default)
        return dataclasses.replace(base, **changes)

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


#: Fields whose default is None, by the type a given value converts to.
_OPTIONAL_TYPES = {"repetition": int, "virtual_coils": int, "time_budget_s": float, "steps": int,
                   "guidance": float, "support_mask": bool, "clip": float}


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return text in ("true", "1", "yes")
    return bool(value)


def _convert(name: str, value: Any, default: Any) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return default
    kind = _OPTIONAL_TYPES.get(name) or (type(default) if default is not None else str)
    try:
        if kind is bool:
            return _boolean(value)
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}={value!r} is not a valid {kind.__name__}") from exc


@dataclass(frozen=True)
class SliceOutcome:
    """One reconstructed slice: ``image (ny, nx)`` complex64 in the data's intensity scale."""

    slice_index: int
    image: np.ndarray
    metadata: ScanMetadata
    method: str
    uncertainty: Optional[np.ndarray] = None
    error: Optional[str] = None
    attributes: dict = field(default_factory=dict)
    usable: bool = True  # False: even the fallback gave no finite, non-zero image

    @property
    def fallback(self) -> bool:
        return self.error is not None


def assemble(records: Iterable[AcqRecord], header_xml: "str | bytes", settings: StreamSettings,
             encoding: Optional[EncodingInfo] = None, limits: GridLimits = GridLimits()
             ) -> Tuple[Tuple[SliceData, ...], Optional[np.ndarray], EncodingInfo]:
    """Drain ``records`` and assemble the scan: (slices, noise (C, N) or None, encoding);
    ``ScanTooLarge`` when the header's grid does not fit the data or ``limits``."""
    xml = header_xml.decode("utf-8", "replace") if isinstance(header_xml, bytes) else header_xml
    enc = encoding or parse_encoding(xml)
    meta = parse_header(xml, anatomy_override=settings.anatomy)
    slices, noise = assemble_slices(list(records), enc, meta, repetition=settings.repetition,
                                    limits=limits)
    log.info("assembled %d slices (%d coils, k-space %s), noise scan: %s", len(slices),
             slices[0].num_coils, slices[0].kspace.shape[1:], noise is not None)
    return slices, noise, enc


def batches(items: Sequence[Any], size: int) -> Iterator[List[Any]]:
    """Consecutive chunks of ``size`` items."""
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def fallback_reconstructor(settings: StreamSettings) -> Optional[Reconstructor]:
    return {"sense": SenseRecon(), "zero_filled": ZeroFilledRecon()}.get(settings.fallback)


class TimeBudgetExceeded(ContextMRIError):
    """The primary reconstruction was stopped: its time budget is spent, or the caller
    interrupted it (session time limit, server shutting down)."""


#: ``() -> reason or None``: checked before each batch and at each sampler step; a reason
#: stops the diffusion sampler and hands the batch (and the rest) to the fallback.
Interrupt = Callable[[], Optional[str]]


def budget_interrupt(settings: StreamSettings, outer: Optional[Interrupt] = None
                     ) -> Optional[Interrupt]:
    """``outer`` combined with ``settings.time_budget_s`` counted from now (None if neither)."""
    if settings.time_budget_s is None:
        return outer
    deadline = time.monotonic() + settings.time_budget_s

    def check() -> Optional[str]:
        reason = outer() if outer is not None else None
        if reason is None and time.monotonic() > deadline:
            reason = f"time budget of {settings.time_budget_s:g} s spent"
        return reason
    return check


def budget_progress(interrupt: Optional[Interrupt], inner: Optional[Progress] = None
                    ) -> Optional[Progress]:
    """A sampler progress callback that forwards to ``inner`` and raises
    :class:`TimeBudgetExceeded` once ``interrupt()`` gives a reason."""
    if interrupt is None:
        return inner

    def progress(i: int, n: int, t: int) -> None:
        if inner is not None:
            inner(i, n, t)
        reason = interrupt()
        if reason is not None:
            raise TimeBudgetExceeded(f"{reason} at sampler step {i + 1}/{n}")
    return progress


@dataclass(frozen=True)
class GroupResult:
    """One batch of slices: the prepared inputs (``None`` when preparation failed) and the
    outcomes, one per slice."""

    slices: List[SliceData]
    batch: Optional[SliceBatch]
    outcomes: List[SliceOutcome]


def reconstruct_groups(groups: Iterable[List[SliceData]], noise: Optional[np.ndarray],
                       primary: Callable[[], Reconstructor], settings: StreamSettings,
                       progress: Optional[Progress] = None,
                       interrupt: Optional[Interrupt] = None) -> Iterator[GroupResult]:
    """Prepare (prewhitening, ESPIRiT) and reconstruct each group of slices.

    ``primary`` is called per batch (so a model that fails to load falls back like a
    sampler that fails). When the preparation itself fails (e.g. too few ACS lines for
    ESPIRiT) the fallback is the zero-filled RSS image, which needs no coil maps. With
    ``settings.time_budget_s`` (or once ``interrupt()`` gives a reason) the diffusion sampler
    is stopped and the fallback reconstructs that batch and the rest. A slice whose image is
    non-finite or all zero is a failure too: the fallback replaces it (``checked_images``).
    """
    prep = PrepConfig(prewhiten=settings.prewhiten, device=settings.resolved_device(),
                      virtual_coils=settings.virtual_coils)
    stop = budget_interrupt(settings, interrupt)
    for group in groups:
        try:
            batch = prepare_slices(group, noise, prep)
        except Exception as exc:  # noqa: BLE001 - e.g. too few ACS lines for ESPIRiT
            if settings.fallback == "none":
                raise
            log.error("preparation failed (%s); sending zero-filled images instead", exc)
            made = fallback_images(_zero_filled(group), f"{type(exc).__name__}: {exc}")
            log.debug("preparation traceback", exc_info=True)
            yield GroupResult(list(group), None, list(_outcomes(group, made, settings)))
            continue
        made = _run_primary(group, batch, primary, settings, stop, budget_progress(stop, progress))
        yield GroupResult(list(group), batch, list(_outcomes(group, made, settings)))


def _run_primary(group: List[SliceData], batch: SliceBatch, primary: Callable[[], Reconstructor],
                 settings: StreamSettings, stop: Optional[Interrupt],
                 progress: Optional[Progress]) -> MadeImages:
    """Per-slice images from the primary reconstructor; the fallback's (with the error text)
    where it failed, was stopped, or gave a non-finite or all-zero slice."""
    args = (batch.kspace, batch.mask, batch.maps, batch.metadata)
    backup = fallback_reconstructor(settings)
    try:
        reason = stop() if stop is not None else None
        if reason is not None:
            raise TimeBudgetExceeded(f"{reason} before the batch started")
        recon = primary()
        if progress is not None and hasattr(recon, "with_progress"):
            recon = recon.with_progress(progress)
        result = recon(*args)
    except Exception as exc:  # noqa: BLE001 - reported to the peer, then the fallback
        log.warning("reconstruction failed on slices %s (%s); falling back to %s",
                    [s.metadata.slice_index for s in group], exc, settings.fallback,
                    exc_info=not isinstance(exc, (TimeBudgetExceeded, ContextMRIError)))
        if backup is None:
            raise
        return fallback_images(backup(*args), f"{type(exc).__name__}: {exc}")
    return checked_images(result, backup, args, [s.metadata.slice_index for s in group])


def reconstruct_batches(groups: Iterable[List[SliceData]], noise: Optional[np.ndarray],
                        primary: Callable[[], Reconstructor], settings: StreamSettings,
                        progress: Optional[Progress] = None,
                        interrupt: Optional[Interrupt] = None) -> Iterator[SliceOutcome]:
    """:func:`reconstruct_groups`, one :class:`SliceOutcome` per slice."""
    for res in reconstruct_groups(groups, noise, primary, settings, progress, interrupt):
        yield from res.outcomes


def _zero_filled(group: List[SliceData]) -> Any:
    """Zero-filled RSS of raw slices (needs no coil maps: the last-resort fallback)."""
    kspace = torch.from_numpy(np.stack([s.kspace for s in group]))
    mask = torch.from_numpy(np.stack([s.mask for s in group]).astype(np.float32))
    return ZeroFilledRecon()(kspace, mask, torch.ones_like(kspace))


def _outcomes(group: List[SliceData], made: MadeImages,
              settings: StreamSettings) -> Iterator[SliceOutcome]:
    info = made.info
    prompts = info.get("prompts")  # the text the prior was conditioned on, when it has text
    for i, sl in enumerate(group):
        prompt = prompts[i] if prompts else build_prompt(sl.metadata)
        attrs = {"prompt": prompt, "method": made.methods[i],
                 "guidance": info.get("guidance"), "steps": info.get("steps"),
                 "model": settings.model or "default", "seed": settings.seed,
                 "unet": info.get("unet")}
        if made.errors[i] is not None:
            attrs["fallback_reason"] = made.errors[i]
        if sl.nonfinite_samples:
            attrs["nonfinite_kspace_samples"] = sl.nonfinite_samples
        unc = None if made.uncertainty is None or made.errors[i] else made.uncertainty[i]
        yield SliceOutcome(slice_index=int(sl.metadata.slice_index or 0), image=made.images[i],
                           metadata=sl.metadata, method=made.methods[i], error=made.errors[i],
                           uncertainty=unc, attributes=attrs, usable=made.usable[i])


def recon_stream(records: Iterable[AcqRecord], header_xml: "str | bytes",
                 settings: StreamSettings, primary: Callable[[], Reconstructor],
                 encoding: Optional[EncodingInfo] = None,
                 interrupt: Optional[Interrupt] = None,
                 limits: GridLimits = GridLimits()) -> Iterator[SliceOutcome]:
    """The whole chain: records in, one :class:`SliceOutcome` per slice out (ascending).
    ``interrupt`` stops the sampler (the fallback finishes); ``limits`` bound the grid."""
    slices, noise, _ = assemble(records, header_xml, settings, encoding, limits)
    yield from reconstruct_batches(batches(slices, settings.batch_size), noise, primary, settings,
                                   interrupt=interrupt)
