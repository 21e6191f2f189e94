"""``contextmri demo``: the product end to end on a scan it simulates itself.

Simulates an ISMRMRD .h5 brain scan, reads it back like a scanner file (header metadata,
noise prewhitening, ACS), undersamples it retrospectively, estimates ESPIRiT maps from the
ACS that remain and reconstructs it with the metadata-conditioned diffusion prior (DDS, the
shipped default model unless --model names another) and classically (zero-filled, SENSE,
L1-wavelet), scoring each against the fully sampled reference.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from contextmri_core.data.prompt import build_prompt
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue

HELP = "simulate a brain scan, undersample it and reconstruct it (a self-contained demo)"
log = logging.getLogger("contextmri.demo")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the scan and the mask")
    p.add_argument("--protocol", default="AXFLAIR", help="AXT1, AXT1PRE, AXT1POST, AXT2, AXFLAIR, AXPD")
    p.add_argument("--matrix", type=int, default=128,
                   help="reconstruction matrix (square; the default model was trained at 128)")
    p.add_argument("--slices", type=int, default=3, help="number of axial slices")
    p.add_argument("--undersample", default="uniform1d:4",
                   help="mask spec: uniform1d:R, random:R:CF, equispaced:R:CF, poisson2d:R")
    p.add_argument("--model", type=Path, default=None,
                   help="model folder: a contextmri checkpoint, the published ContextMRI "
                        "MRI_checkpoint/ or one UNet folder of it (default: the shipped model)")
    p.add_argument("--unet", default=None,
                   help="published checkpoint: fastmri or skm-tea (default: from the scan)")
    p.add_argument("--preset", default="auto",
                   help="sampler settings: auto (paper for published checkpoints), paper, "
                        "contextmri")
    p.add_argument("--steps", type=int, default=None,
                   help="DDS steps (default: 50 for our models, the paper's 100 for published)")
    p.add_argument("--guidance", type=float, default=None,
                   help="CFG scale (0 = unconditional; default 1)")
    p.add_argument("--no-dds", action="store_true", help="classical reconstructions only")
    p.set_defaults(func=run)
    return p


def _simulate(args) -> Path:
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=args.matrix, num_slices=args.slices, num_coils=8, lesion_probability=1.0)
    scan = simulate(args.seed, args.protocol, cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    return write_ismrmrd(args.out / f"file_brain_{args.protocol}_demo.h5", scan)


def _methods(args) -> dict:
    from contextmri_core.recon.classical import CLASSICAL

    methods = {name: cls() for name, cls in CLASSICAL.items()}
    if not args.no_dds:
        from contextmri_core.service.session import Engine
        from contextmri_core.recon.stream import StreamSettings

        settings = StreamSettings(model=str(args.model) if args.model else None, unet=args.unet,
                                  preset=args.preset, steps=args.steps, guidance=args.guidance,
                                  seed=args.seed, device="cpu")
        engine = Engine()
        methods = {"dds": engine.reconstructor(engine.resolved(settings, contextmri_steps=50)),
                   **methods}
    return methods


def _reconstruct(scan, args):
    from contextmri_core.recon.prepare import prepare_scan, prepare_slices, undersample

    full = prepare_scan(scan)
    reference = mvue(full.kspace, full.maps)
    mask = make_mask(args.undersample, scan.slices[0].mask.shape, args.seed)
    batch = prepare_slices([undersample(s, mask) for s in scan.slices], scan.noise)
    images, seconds = {}, {}
    for name, method in _methods(args).items():
        t0 = time.perf_counter()
        images[name] = method(batch.kspace, batch.mask, batch.maps, batch.metadata).image
        seconds[name] = time.perf_counter() - t0
        log.info("%s: %.2f s", name, seconds[name])
    return reference, images, seconds


def run(args) -> int:
    from contextmri_core.io.images.png import contact_sheet
    from contextmri_core.io.raw.reader import read_scan
    from contextmri_core.recon.evaluate import format_table, score_all

    path = _simulate(args)
    scan = read_scan(path)
    print(f"scan: {path}\n  {len(scan.slices)} slices, {scan.num_coils} coils, matrix "
          f"{scan.slices[0].kspace.shape[1:]}, noise scan {'yes' if scan.noise is not None else 'no'}")
    for sl in scan.slices:
        print(f"  prompt: {build_prompt(sl.metadata)}")
    reference, images, seconds = _reconstruct(scan, args)
    scores = score_all(images, reference)
    for name in scores:
        scores[name]["seconds"] = round(seconds[name], 3)
    print(f"\n{args.undersample}, magnitudes vs. the fully sampled MVUE (mean over slices):")
    print(format_table(scores))
    sheet = contact_sheet(args.out / "demo.png",
                          {"reference": reference.cpu().numpy(),
                           **{k: v.cpu().numpy() for k, v in images.items()}})
    (args.out / "metrics.json").write_text(json.dumps({path.name: scores}, indent=2))
    print(f"\nwrote {sheet} and {args.out / 'metrics.json'}")
    return 0
