"""The file loop of ``contextmri replay``: one model per process, files shared out by torchrun
rank, per-file errors contained, progress bars, PACS push, summary table and exit code.

Nothing is lost and nothing partial is left: the output folder (and the outbox) are checked
before the model is loaded; each file's results are published whole (``io.publish``) and its
DICOM instances queued for the PACS as soon as that file is done; SIGTERM/SIGINT stop the run
with one line and exit 143/130, keeping every finished file (``service.interrupt``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from contextmri_core.data.grid_limits import GridLimits
from contextmri_core.errors import ConfigError, ContextMRIError
from contextmri_core.recon.stream import StreamSettings
from contextmri_core.service.interrupt import Interrupted, interruptible
from contextmri_core.service.replay_volume import VolumeJob, VolumeReport, process_file
from contextmri_core.service.session import Engine

log = logging.getLogger("contextmri.replay")
#: Steps of our own models in replay (the paper preset of a published checkpoint has 100).
REPLAY_STEPS = 50


def world() -> Tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def output_stems(files: List[Path]) -> List[str]:
    """A distinct output folder name per file: its name without ``.h5`` where that is free,
    else ``name_2``, ``name_3``, ... skipping every name another input has as its own (so
    ``a/scan.h5 b/scan.h5 c/scan_2.h5`` -> ``scan``, ``scan_3``, ``scan_2``)."""
    own = [f.name[:-3] if f.name.endswith(".h5") else f.stem for f in files]
    reserved = set(own)
    stems: List[str] = []
    for i, stem in enumerate(own):
        if stem not in own[:i]:
            stems.append(stem)
            continue
        k = 2
        while f"{stem}_{k}" in reserved or f"{stem}_{k}" in stems:
            k += 1
        stems.append(f"{stem}_{k}")
    return stems


def settings_of(opts: Dict[str, Any], local_rank: int) -> StreamSettings:
    """``StreamSettings`` from the merged options (``ConfigError`` names a bad value)."""
    import torch

    device = str(opts["device"])
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    names = ("model", "method", "steps", "guidance", "seed", "batch_size", "ensemble", "anatomy",
             "phase", "prewhiten", "fallback", "repetition", "virtual_coils", "unet", "preset",
             "grid", "support_mask", "clip", "precision")
    props = {**{n: opts[n] for n in names}, "device": device,
             "time_budget_s": opts["time_budget"]}
    return StreamSettings.from_properties(props)  # converts and names a bad value


def limits_of(opts: Dict[str, Any]) -> GridLimits:
    """``GridLimits`` from --max-matrix / --max-scan-gib."""
    try:
        return GridLimits(max_matrix=int(opts["max_matrix"]),
                          max_grid_bytes=int(float(opts["max_scan_gib"]) * (1 << 30)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--max-matrix / --max-scan-gib: {exc}") from None


def _progress_factory(stem: str, enabled: bool, rank: int) -> Callable[[int], Any]:
    """``total -> sampler progress callback`` drawing one tqdm bar per volume on stderr."""
    from tqdm import tqdm

    def make(total: int):
        if not enabled or total <= 0:
            return None
        bar = tqdm(total=total, desc=stem if rank == 0 else f"[{rank}] {stem}", unit="step",
                   file=sys.stderr, position=rank, leave=True, dynamic_ncols=True,
                   disable=None)  # None: no bar when stderr is not a terminal (CI logs)

        def step(i: int, n: int, t: int) -> None:
            bar.update(1)
            if bar.n >= bar.total:
                bar.close()
        return step
    return make


@dataclass
class RunState:
    """What the run has done so far (the summary; what an interrupt reports)."""

    total: int
    out: Path
    outbox: Any = None  # io.dicom.outbox.Outbox when --pacs
    reports: List[VolumeReport] = field(default_factory=list)
    queued: int = 0


def _queue(state: RunState, rep: VolumeReport) -> None:
    """Queue a finished file's DICOM instances for the PACS at once (push drains later)."""
    if state.outbox is None or not rep.ok:
        return
    dicoms = [Path(p) for p in rep.outputs if p.endswith(".dcm")]
    try:
        state.queued += len(state.outbox.enqueue(dicoms))
    except ContextMRIError as exc:
        rep.ok, rep.error = False, f"{rep.file}: results written but not queued for the PACS: {exc}"
        log.error("%s", rep.error)


def _one_file(path: Path, stem: str, job: VolumeJob, primary: Callable,
              progress: Callable[[int], Any]) -> VolumeReport:
    """One file, its errors contained in the report (interrupts pass through)."""
    try:
        rep = process_file(path, job, primary, stem, progress)
        level = logging.INFO if rep.ok else logging.ERROR
        log.log(level, "%s: %d slices, %s, %.1f s -> %s", path.name, rep.slices, rep.method,
                rep.seconds, job.out / stem)
        if rep.error:
            log.error("%s", rep.error)
    except ContextMRIError as exc:
        rep = VolumeReport(file=str(path), error=str(exc), output=stem)
        log.error("%s", exc)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
        rep = VolumeReport(file=str(path), error=f"{path}: {type(exc).__name__}: {exc}",
                           output=stem)
        log.error("%s", rep.error)
        log.debug("traceback", exc_info=True)
    return rep


def _run_files(files: List[Path], stems: List[str], job: VolumeJob, engine: Engine,
               enabled: bool, rank: int, state: RunState) -> None:
    primary = lambda: engine.reconstructor(job.settings)  # noqa: E731
    for path, stem in zip(files, stems):
        rep = _one_file(path, stem, job, primary, _progress_factory(stem, enabled, rank))
        _queue(state, rep)
        state.reports.append(rep)


def _gather(reports: List[VolumeReport], world_size: int) -> List[VolumeReport]:
    """Every rank's reports on every rank (a no-op in a single process)."""
    if world_size == 1:
        return reports
    import torch.distributed as dist

    parts: List[Any] = [None] * world_size
    dist.all_gather_object(parts, [r.to_dict() for r in reports])
    return [VolumeReport(**d) for part in parts for d in part]


def _outbox(opts: Dict[str, Any], out: Path) -> Any:
    """The outbox when --pacs is given (checked writable now, before any work), else None."""
    if not opts["pacs"]:
        return None
    from contextmri_core.io.dicom.pacs import Outbox, PacsTarget
    from contextmri_core.io.publish import probe_writable

    PacsTarget.parse(str(opts["pacs"]), calling_aet=str(opts["calling_aet"]))  # fail early
    root = Path(opts["outbox"]) if opts["outbox"] else out / "outbox"
    return Outbox(probe_writable(root, "outbox"))


def _push(opts: Dict[str, Any], outbox: Any) -> Tuple[Optional[str], bool]:
    """Drain the outbox every rank filled: (summary line or None, all sent)."""
    if outbox is None:
        return None, True
    from contextmri_core.io.dicom.pacs import PacsTarget, push

    target = PacsTarget.parse(str(opts["pacs"]), calling_aet=str(opts["calling_aet"]))
    res = push(outbox, target)
    line = (f"PACS {target.host}:{target.port} ({target.called_aet}): sent {res.sent}, "
            f"failed {res.failed}, still queued {len(res.remaining)} in {outbox.root}"
            + ("" if res.ok else " -- run `contextmri push` later to deliver them"))
    if res.locked:
        line += f" (another push holds {outbox.root}: it delivers them)"
    return line, res.ok


def summary_table(reports: List[VolumeReport]) -> str:
    """One line per file: the input as given, the output folder that holds its results,
    status, slices, the method(s) that really made the images, seconds, scores."""
    width = max([len("input")] + [len(r.file) for r in reports])
    out_w = max([len("output")] + [len(r.output) for r in reports])
    lines = [f"{'input':<{width}}  {'output':<{out_w}}  {'status':<7} {'slices':>6}  "
             f"{'recon':<26} {'s':>7}  scores"]
    for r in reports:
        head = f"{r.file:<{width}}  {r.output:<{out_w}}  "
        if not r.ok:
            lines.append(f"{head}{'FAILED':<7} {r.slices or '':>6}  {r.method:<26} "
                         f"{'':>7}  {r.error}")
            continue
        scores = "  ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.3f}" for k, v in r.metrics.items())
        lines.append(f"{head}{'ok':<7} {r.slices:>6}  {r.method:<26} {r.seconds:>7.1f}  {scores}")
    return "\n".join(lines)


def _prepare_output(opts: Dict[str, Any], out: Path) -> Any:
    """Check the output folder and the outbox before any work; clean stale staging."""
    from contextmri_core.io.publish import clean_stale, probe_writable

    probe_writable(out, "output folder")
    outbox = _outbox(opts, out)
    clean_stale(out)
    return outbox


def _replay(files: List[Path], opts: Dict[str, Any], state: RunState) -> int:
    rank, world_size, local_rank = world()
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    settings = settings_of(opts, local_rank)
    job_limits = limits_of(opts)
    state.outbox = _prepare_output(opts, state.out)
    engine = Engine()
    model_name = "none"
    if settings.method in ("dds", "dps"):
        engine.prior(settings)  # load before the loop: a bad --model is a clear error, once
        model_name = Path(engine.model_dir(settings)).name
    settings = engine.resolved(settings, contextmri_steps=REPLAY_STEPS)
    job = VolumeJob(out=state.out, settings=settings, outputs=opts["outputs"],
                    undersample=opts["undersample"], baselines=bool(opts["baselines"]),
                    model_name=model_name, show_phi=bool(opts["show_phi"]), limits=job_limits)
    stems = output_stems(files)
    mine = list(range(rank, len(files), world_size))
    _run_files([files[i] for i in mine], [stems[i] for i in mine], job, engine,
               bool(opts["progress"]), rank, state)
    reports = _gather(state.reports, world_size)
    reports.sort(key=lambda r: [str(f) for f in files].index(r.file))
    if rank != 0:
        return 0 if all(r.ok for r in reports) else 1
    push_line, pushed = _push(opts, state.outbox)
    print(summary_table(reports))
    if push_line:
        print(push_line)
    _write_metrics(opts, reports)
    failed = sum(not r.ok for r in reports)
    if failed:
        print(f"{failed} of {len(reports)} files failed", file=sys.stderr)
    return 1 if failed or not pushed else 0


def _write_metrics(opts: Dict[str, Any], reports: List[VolumeReport]) -> None:
    if not opts["metrics_json"]:
        return
    path = Path(opts["metrics_json"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({Path(r.file).name: r.metrics for r in reports if r.metrics},
                               indent=2) + "\n")
    print(f"scores written to {path}")


def interrupted_line(state: RunState, exc: Interrupted) -> str:
    """The one line a SIGTERM/SIGINT leaves: what is done and where it is."""
    done = sum(r.ok for r in state.reports)
    line = (f"contextmri replay: {exc} after {done} of {state.total} files; finished results "
            f"are in {state.out} (nothing partial is left)")
    if state.outbox is not None:
        line += (f"; {state.queued} instances queued in {state.outbox.root}: run `contextmri "
                 f"push {state.outbox.root} --pacs ...` to deliver them")
    return line


def replay(files: List[Path], opts: Dict[str, Any]) -> int:
    """Run ``files`` (this rank's share under torchrun); 0 when every file and push worked,
    1 otherwise, 130/143 when interrupted by SIGINT/SIGTERM."""
    state = RunState(total=len(files), out=Path(opts["out"]))
    with interruptible():
        try:
            return _replay(files, opts, state)
        except Interrupted as exc:
            print(interrupted_line(state, exc), file=sys.stderr)
            sys.stderr.flush()
            return exc.exit_code
