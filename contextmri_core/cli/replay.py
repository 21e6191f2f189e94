"""``contextmri replay``: reconstruct raw scanner files offline and write DICOM (and more).

Give it ISMRMRD v1 / MRD .h5 files (or fastMRI .h5, or folders of them). For each file it
reads the header metadata (TR/TE/TI/flip angle, contrast, anatomy, ...), prewhitens with the
noise scan, estimates ESPIRiT coil maps from the calibration lines and reconstructs every slice
with the metadata-conditioned diffusion prior (DDS; the shipped default model unless --model
names another). Results go to OUT/<file name>/: DICOM series (dicom/), PNG contact sheets
(png/), and optionally an ISMRMRD image file and NIfTI volumes.

A file that fails (corrupt, truncated, not MRI, ...) gets a one-line error; the others still
run and the exit code is 1. If the diffusion reconstruction fails or runs past --time-budget,
the classical reconstruction (--fallback, SENSE by default) is written instead, labelled
FALLBACK in SeriesDescription and ImageComments: a scan never ends without images.

With --undersample SPEC a fully sampled file is undersampled retrospectively and every
reconstruction is scored (PSNR/SSIM of magnitudes after a least-squares intensity match,
mean over slices) against the fully sampled reference; --metrics-json writes the scores.
With --pacs HOST:PORT:AET the DICOM files go through an on-disk outbox to a PACS (C-STORE);
whatever the PACS does not acknowledge stays queued for `contextmri push`.

Settings may also come from a YAML file (--config), keys named as the long flags
(e.g. `steps: 50`, `batch-size: 4`); flags on the command line win. For several GPUs or
nodes run it under torchrun: files are shared out by rank, one model per rank, and the
images are the same as in a single process.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List

HELP = "reconstruct raw .h5 files offline (DICOM/PNG/ISMRMRD/NIfTI out, optional PACS push)"
log = logging.getLogger("contextmri.replay")

EPILOG = """examples:
  contextmri replay scan.h5                              # DICOM + PNG into replay_out/scan/
  contextmri replay raw/*.h5 --outputs dicom,png,nifti --steps 50 --guidance 1
  contextmri replay full.h5 --undersample uniform1d:4 --metrics-json m.json --baselines
  contextmri replay scan.h5 --pacs 127.0.0.1:4242:ORTHANC
  contextmri replay file1000007.h5 --model MRI_checkpoint   # the published ContextMRI weights
  contextmri replay knee.h5 --model MRI_checkpoint --unet fastmri --preset contextmri
  torchrun --nproc_per_node 4 -m contextmri_core.cli.main replay raw/ --device cuda
"""

#: Every setting: flag default (also what a YAML key may name).
DEFAULTS: Dict[str, Any] = {
    "out": "replay_out", "outputs": "dicom,png", "undersample": None, "metrics_json": None,
    "baselines": False, "model": None, "method": "dds", "steps": None, "guidance": None,
    "ensemble": 1, "seed": 0, "batch_size": 4, "device": "auto", "anatomy": None,
    "phase": False, "prewhiten": True, "fallback": "sense", "time_budget": None,
    "repetition": None, "pacs": None, "calling_aet": "CONTEXTMRI", "outbox": None,
    "show_phi": False, "progress": True, "virtual_coils": None, "max_matrix": 4096,
    "max_scan_gib": 8.0, "unet": None, "preset": "auto",
    "grid": "auto", "support_mask": None, "clip": None, "precision": None,
}


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("replay", help=HELP, description=__doc__, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              argument_default=argparse.SUPPRESS)
    p.add_argument("files", nargs="+", type=Path, help=".h5 files or folders of them")
    io = p.add_argument_group("inputs and outputs")
    io.add_argument("--out", type=Path, help="output folder (default replay_out)")
    io.add_argument("--outputs", help="comma list of dicom, png, ismrmrd, nifti (default dicom,png)")
    io.add_argument("--config", type=Path, help="YAML file with any of these settings")
    io.add_argument("--undersample", metavar="SPEC",
                    help="undersample fully sampled files: uniform1d:R[:CF], poisson2d:R, "
                         "random:R:CF, equispaced:R:CF; adds PSNR/SSIM against the full data")
    io.add_argument("--metrics-json", type=Path, help="write the scores here (with --undersample)")
    io.add_argument("--baselines", action="store_true",
                    help="also write the classical recons (and the reference) as series")
    rec = p.add_argument_group("reconstruction")
    rec.add_argument("--model", help="model folder: a contextmri checkpoint, the published "
                                     "ContextMRI MRI_checkpoint/ or one UNet folder of it "
                                     "(default: the shipped model)")
    rec.add_argument("--unet", help="published checkpoint: fastmri or skm-tea (default: chosen "
                                    "from the data; qDESS -> skm-tea, else fastmri)")
    rec.add_argument("--preset", help="sampler settings: auto (default: paper for a published "
                                      "checkpoint, contextmri for ours), paper or contextmri")
    rec.add_argument("--method", help="dds (default), dps, sense or zero_filled")
    rec.add_argument("--steps", type=int, help="diffusion steps (default: the preset's; 50 for "
                                               "our models, 100 paper)")
    rec.add_argument("--guidance", type=float, help="CFG scale, 0 = unconditional (default 1)")
    rec.add_argument("--grid", help="a grid unlike the model's size: auto, full, pad, window, "
                                    "window-zero (auto: pad for published checkpoints, full "
                                    "for ours; see recon/grid.py)")
    rec.add_argument("--support-mask", dest="support_mask", action="store_true",
                     help="zero x0 outside the coil-map support each step (ours: on)")
    rec.add_argument("--no-support-mask", dest="support_mask", action="store_false",
                     help="no support mask (paper: off)")
    rec.add_argument("--clip", type=float, help="guard |x0| at this multiple of the 99th "
                                                "percentile; 0 = off (ours 3, paper 0)")
    rec.add_argument("--precision", help="GPU precision fp32, fp16 or bf16 (ours fp16, paper "
                                         "fp32)")
    rec.add_argument("--ensemble", type=int,
                     help="samples per slice; > 1 adds an uncertainty (std) series (default 1)")
    rec.add_argument("--seed", type=int, help="sampler and mask seed (default 0)")
    rec.add_argument("--batch-size", type=int, help="slices per network batch (default 4)")
    rec.add_argument("--device", help="auto (default: cuda if present), cpu, cuda, cuda:1")
    rec.add_argument("--anatomy", help="override the anatomy the header gives (e.g. brain)")
    rec.add_argument("--phase", action="store_true", help="also write a phase series")
    rec.add_argument("--no-prewhiten", dest="prewhiten", action="store_false",
                     help="ignore the noise scan")
    rec.add_argument("--fallback", help="classical recon when DDS fails: sense (default), "
                                        "zero_filled or none")
    rec.add_argument("--time-budget", type=float, metavar="S",
                     help="seconds per file for the diffusion recon; past it the fallback runs")
    rec.add_argument("--repetition", type=int, help="ISMRMRD repetition to use (default lowest)")
    rec.add_argument("--virtual-coils", type=int, metavar="N",
                     help="SVD coil compression to N virtual coils before ESPIRiT and DDS "
                          "(faster CG with many coils; default off)")
    rec.add_argument("--max-matrix", type=int, metavar="N",
                     help="refuse a header asking for a k-space grid axis over N samples "
                          "(default 4096; the grid is also checked against the data read)")
    rec.add_argument("--max-scan-gib", type=float, metavar="G",
                     help="refuse a scan whose k-space grid would take over G GiB (default 8)")
    pacs = p.add_argument_group("PACS")
    pacs.add_argument("--pacs", metavar="HOST:PORT:AET", help="send the DICOM files (C-STORE)")
    pacs.add_argument("--calling-aet", help="our AE title (default CONTEXTMRI)")
    pacs.add_argument("--outbox", type=Path, help="outbox folder (default OUT/outbox)")
    misc = p.add_argument_group("other")
    misc.add_argument("--show-phi", action="store_true",
                      help="log patient names/IDs (off by default)")
    misc.add_argument("--no-progress", dest="progress", action="store_false",
                      help="no progress bars")
    p.set_defaults(func=run)
    return p


def resolve_options(args: argparse.Namespace) -> Dict[str, Any]:
    """Defaults < YAML (--config) < flags given on the command line."""
    from contextmri_core.errors import ConfigError
    from contextmri_core.io.config_file import read_yaml_mapping

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "verbose")}
    yaml_opts = {}
    if given.get("config") is not None:
        yaml_opts = {k.replace("-", "_"): v for k, v in read_yaml_mapping(given["config"]).items()}
        unknown = sorted(set(yaml_opts) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"{given['config']}: unknown settings {unknown}; "
                              f"valid: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **yaml_opts, **{k: v for k, v in given.items() if k != "config"}}
    outputs = [o.strip() for o in str(opts["outputs"]).split(",") if o.strip()]
    from contextmri_core.service.replay_volume import OUTPUTS

    bad = [o for o in outputs if o not in OUTPUTS]
    if bad or not outputs:
        raise ConfigError(f"--outputs {opts['outputs']!r}: use a comma list of {OUTPUTS}")
    opts["outputs"] = tuple(outputs)
    if opts["metrics_json"] is not None and not opts["undersample"]:
        raise ConfigError("--metrics-json needs --undersample (scores need a fully sampled "
                          "reference)")
    return opts


def input_files(paths: List[Path]) -> List[Path]:
    """Files as given, folders expanded to their ``*.h5`` (sorted); order kept, no repeats.
    ``ConfigError`` for a folder without .h5 files."""
    from contextmri_core.errors import ConfigError

    out: List[Path] = []
    for p in paths:
        items = sorted(Path(p).glob("*.h5")) if Path(p).is_dir() else [Path(p)]
        if Path(p).is_dir() and not items:
            raise ConfigError(f"{p}: folder holds no .h5 files")
        out += [i for i in items if i not in out]
    return out


def run(args: argparse.Namespace) -> int:
    from contextmri_core.service.replay_run import replay

    opts = resolve_options(args)
    files = input_files(list(args.files))
    if not files:
        from contextmri_core.errors import ConfigError
        raise ConfigError("no input files (folders are searched for *.h5)")
    return replay(files, opts)
