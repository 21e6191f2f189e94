"""The file loop of ``contextmri replay``: one model per process, files shared out by torchrun
rank, per-file errors contained, progress bars, PACS push, summary table and exit code."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from contextmri_core.errors import ContextMRIError
from contextmri_core.recon.stream import StreamSettings
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
    """A distinct output folder name per file (``name``, ``name_2``, ... for equal names)."""
    seen: Dict[str, int] = {}
    stems = []
    for f in files:
        stem = f.name[:-3] if f.name.endswith(".h5") else f.stem
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
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


def _run_files(files: List[Path], stems: List[str], job: VolumeJob, engine: Engine,
               enabled: bool, rank: int) -> List[VolumeReport]:
    reports = []
    primary = lambda: engine.reconstructor(job.settings)  # noqa: E731
    for path, stem in zip(files, stems):
        try:
            rep = process_file(path, job, primary, stem, _progress_factory(stem, enabled, rank))
            note = (f" ({rep.fallback_slices} slices FALLBACK {rep.fallback_method}: "
                    f"{rep.fallback_reason})" if rep.fallback_slices else "")
            log.warning("%s: %d slices, %s, %.1f s%s", path.name, rep.slices, rep.method,
                        rep.seconds, note)
        except ContextMRIError as exc:
            rep = VolumeReport(file=str(path), error=str(exc))
            log.error("%s", exc)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            rep = VolumeReport(file=str(path), error=f"{path}: {type(exc).__name__}: {exc}")
            log.error("%s", rep.error)
            log.debug("traceback", exc_info=True)
        reports.append(rep)
    return reports


def _gather(reports: List[VolumeReport], world_size: int) -> List[VolumeReport]:
    """Every rank's reports on every rank (a no-op in a single process)."""
    if world_size == 1:
        return reports
    import torch.distributed as dist

    parts: List[Any] = [None] * world_size
    dist.all_gather_object(parts, [r.to_dict() for r in reports])
    return [VolumeReport(**d) for part in parts for d in part]


def _push(opts: Dict[str, Any], reports: List[VolumeReport], out: Path
          ) -> Tuple[Optional[str], bool]:
    """Queue every DICOM file written and drain the outbox: (summary line or None, all sent)."""
    if not opts["pacs"]:
        return None, True
    from contextmri_core.io.dicom.pacs import Outbox, PacsTarget, push

    target = PacsTarget.parse(str(opts["pacs"]), calling_aet=str(opts["calling_aet"]))
    outbox = Outbox(Path(opts["outbox"]) if opts["outbox"] else out / "outbox")
    files = [Path(p) for r in reports for p in r.outputs if p.endswith(".dcm")]
    outbox.enqueue(files)
    res = push(outbox, target)
    line = (f"PACS {target.host}:{target.port} ({target.called_aet}): sent {res.sent}, "
            f"failed {res.failed}, still queued {len(res.remaining)} in {outbox.root}"
            + ("" if res.ok else " -- run `contextmri push` later to deliver them"))
    return line, res.ok


def summary_table(reports: List[VolumeReport]) -> str:
    """One line per file: status, slices, how it was reconstructed, seconds, scores."""
    lines = [f"{'file':<40} {'status':<7} {'slices':>6} {'recon':<22} {'s':>7}  scores"]
    for r in reports:
        name = Path(r.file).name[:40]
        if not r.ok:
            lines.append(f"{name:<40} {'FAILED':<7} {'':>6} {'':<22} {'':>7}  {r.error}")
            continue
        recon = r.method + (f" +{r.fallback_slices} {r.fallback_method}" if r.fallback_slices
                            else "")
        scores = "  ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.3f}" for k, v in r.metrics.items())
        lines.append(f"{name:<40} {'ok':<7} {r.slices:>6} {recon:<22} {r.seconds:>7.1f}  {scores}")
    return "\n".join(lines)


def replay(files: List[Path], opts: Dict[str, Any]) -> int:
    """Run ``files`` (this rank's share under torchrun); 0 when every file and push worked."""
    rank, world_size, local_rank = world()
    if world_size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    settings = settings_of(opts, local_rank)
    engine = Engine()
    model_name = "none"
    if settings.method in ("dds", "dps"):
        engine.prior(settings)  # load before the loop: a bad --model is a clear error, once
        model_name = Path(engine.model_dir(settings)).name
    settings = engine.resolved(settings, contextmri_steps=REPLAY_STEPS)
    out = Path(opts["out"])
    job = VolumeJob(out=out, settings=settings, outputs=opts["outputs"],
                    undersample=opts["undersample"], baselines=bool(opts["baselines"]),
                    model_name=model_name, show_phi=bool(opts["show_phi"]))
    stems = output_stems(files)
    mine = list(range(rank, len(files), world_size))
    reports = _run_files([files[i] for i in mine], [stems[i] for i in mine], job, engine,
                         bool(opts["progress"]), rank)
    reports = _gather(reports, world_size)
    reports.sort(key=lambda r: [str(f) for f in files].index(r.file))
    if rank != 0:
        return 0 if all(r.ok for r in reports) else 1
    push_line, pushed = _push(opts, reports, out)
    print(summary_table(reports))
    if push_line:
        print(push_line)
    if opts["metrics_json"]:
        path = Path(opts["metrics_json"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({Path(r.file).name: r.metrics for r in reports if r.metrics},
                                   indent=2) + "\n")
        print(f"scores written to {path}")
    failed = sum(not r.ok for r in reports)
    if failed:
        print(f"{failed} of {len(reports)} files failed", file=sys.stderr)
    return 1 if failed or not pushed else 0

