"""SVD coil compression before DDS, side by side in one run (32 receive coils):

1. Seconds per DDS step and the share outside the network, 32 coils vs 8 virtual coils
   (random problem of ``benchmarks/dds_step.py``, 128x128, batch 4, CFG 1 and 2, 10 CG
   iterations, 6 steps), plus the one-off cost of computing and applying the compression.
2. The PSNR cost on a simulated 32-coil AXT2 scan (128x128, 1 slice, uniform1d x4 with
   ContextMRI's centre fraction 0.08): CG-SENSE and DDS (shipped default model, 20 steps,
   CFG 1) with 32 coils vs 8 virtual coils, both against the MVUE of the fully sampled slice
   with its own 32-coil maps, plus the preparation (prewhitening, compression, ESPIRiT) time.

    .venv/bin/python benchmarks/coil_compression.py [--threads 2] [--virtual 8]

The LAST line is ``cc_speedup=<32-coil / virtual-coil DDS step time at CFG 2> cc_psnr_cost_db=
<DDS PSNR with 32 coils minus with the virtual coils>``. ~2-4 min on 2 quiet CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import dds_step  # noqa: E402
from contextmri_core.physics.coil_compression import compress, compression_matrix  # noqa: E402

COILS = 32
SIZE = 128


def compress_problem(kspace: torch.Tensor, maps: torch.Tensor, num_virtual: int):
    """Per-slice compression of ``kspace``/``maps`` ``(B, C, n, n)`` from each slice's central
    16 k-space rows (what the preparation stage does with the ACS block)."""
    c = kspace.shape[-2] // 2
    mats = [compression_matrix(k[:, c - 8:c + 8], num_virtual=num_virtual) for k in kspace]
    return (torch.stack([compress(k, m) for k, m in zip(kspace, mats)]),
            torch.stack([compress(s, m) for s, m in zip(maps, mats)]))


@contextlib.contextmanager
def virtual_problem(num_virtual: int) -> Iterator[None]:
    """While active, ``dds_step.measure_step`` times the random problem compressed to
    ``num_virtual`` coils (it builds its problem with ``dds_step.random_problem``)."""
    original = dds_step.random_problem

    def compressed(size: int, coils: int, batch: int, device: str = "cpu"):
        kspace, mask, maps = original(size, coils, batch, device)
        kspace, maps = compress_problem(kspace, maps, num_virtual)
        return kspace, mask, maps

    dds_step.random_problem = compressed
    try:
        yield
    finally:
        dds_step.random_problem = original


def step_timings(num_virtual: int) -> Dict[str, Dict[str, float]]:
    """``{"cfg1 32": measure_step(...), "cfg1 8v": ..., ...}`` on one fresh small prior."""
    from contextmri_core.prior.build import new_prior

    prior = new_prior("contextmri-small", image_size=(SIZE, SIZE))
    out = {}
    for guidance in (1.0, 2.0):
        common = dict(prior=prior, size=SIZE, coils=COILS, batch=4, steps=6, guidance=guidance,
                      cg_iterations=10)
        out[f"cfg{guidance:g} {COILS}"] = dds_step.measure_step(**common)
        with virtual_problem(num_virtual):
            out[f"cfg{guidance:g} {num_virtual}v"] = dds_step.measure_step(**common)
    return out


def compression_seconds(num_virtual: int) -> float:
    """One-off seconds to compute and apply the compression for a batch of 4 slices."""
    kspace, _, maps = dds_step.random_problem(SIZE, COILS, 4)
    t0 = time.perf_counter()
    compress_problem(kspace, maps, num_virtual)
    return time.perf_counter() - t0


def simulated_scan(out: Path):
    """(fully sampled 32-coil scan, its slices undersampled uniform1d x4), read from ISMRMRD."""
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.io.raw.reader import read_scan
    from contextmri_core.physics.masks import make_mask
    from contextmri_core.recon.prepare import undersample
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=SIZE, num_slices=1, num_coils=COILS)
    scan = read_scan(write_ismrmrd(out / "cc32.h5", simulate(0, "AXT2", cfg)))
    mask = make_mask("uniform1d:4", scan.slices[0].mask.shape, 0)
    return scan, [undersample(s, mask) for s in scan.slices]


def psnr_costs(num_virtual: int) -> Dict[str, Dict[str, float]]:
    """``{"32": {"prep_s", "sense", "dds"}, "8v": {...}}``: PSNR (dB) vs the fully sampled MVUE."""
    from contextmri_core.io.models.checkpoint import load_prior
    from contextmri_core.models import DEFAULT_MODEL_DIR
    from contextmri_core.physics.mvue import mvue
    from contextmri_core.recon.classical import SenseRecon
    from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
    from contextmri_core.recon.evaluate import score_slices
    from contextmri_core.recon.prepare import PrepConfig, prepare_scan, prepare_slices
    from contextmri_core.sampling.dds import DDSConfig

    with tempfile.TemporaryDirectory() as tmp:
        scan, slices = simulated_scan(Path(tmp))
    full = prepare_scan(scan)
    reference = mvue(full.kspace, full.maps)
    dds = DiffusionReconstructor(load_prior(DEFAULT_MODEL_DIR),
                                 DiffusionReconConfig(dds=DDSConfig(steps=20, guidance=1.0)))
    out = {}
    for name, v in ((str(COILS), None), (f"{num_virtual}v", num_virtual)):
        t0 = time.perf_counter()
        b = prepare_slices(slices, scan.noise, PrepConfig(virtual_coils=v))
        row = {"prep_s": time.perf_counter() - t0}
        for method, recon in (("sense", SenseRecon()), ("dds", dds)):
            t0 = time.perf_counter()
            image = recon(b.kspace, b.mask, b.maps, b.metadata).image
            row[f"{method}_s"] = time.perf_counter() - t0
            row[method] = score_slices(image, reference)["psnr"]
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--virtual", type=int, default=8, help="virtual coils (default 8)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    v = f"{args.virtual}v"
    print(f"device=cpu threads={args.threads} coils={COILS} virtual={args.virtual} size={SIZE}")
    steps = step_timings(args.virtual)
    print("\nDDS step (random problem, batch 4, 10 CG iterations, 6 steps):")
    print(f"{'setting':<10} {'s/step':>7} {'net s':>6} {'other s':>7} {'outside share':>13}")
    for name, r in steps.items():
        other = r["seconds_per_step"] - r["network_seconds_per_step"]
        print(f"{name:<10} {r['seconds_per_step']:>7.3f} {r['network_seconds_per_step']:>6.3f} "
              f"{other:>7.3f} {r['outside_network_share']:>13.3f}")
    speed = {g: steps[f"cfg{g} {COILS}"]["seconds_per_step"]
             / steps[f"cfg{g} {v}"]["seconds_per_step"] for g in ("1", "2")}
    print(f"speedup per step: CFG 1 {speed['1']:.2f}x, CFG 2 {speed['2']:.2f}x; "
          f"compression of a batch of 4 (one-off): {compression_seconds(args.virtual):.3f} s")
    cost = psnr_costs(args.virtual)
    print(f"\nsimulated AXT2, {SIZE}x{SIZE}, 1 slice, uniform1d x4, vs fully sampled MVUE:")
    print(f"{'coils':<6} {'prep s':>6} {'SENSE dB':>8} {'s':>5} {'DDS-20 dB':>9} {'s':>6}")
    for name, r in cost.items():
        print(f"{name:<6} {r['prep_s']:>6.2f} {r['sense']:>8.2f} {r['sense_s']:>5.2f} "
              f"{r['dds']:>9.2f} {r['dds_s']:>6.2f}")
    print(f"PSNR cost: SENSE {cost[str(COILS)]['sense'] - cost[v]['sense']:+.2f} dB, "
          f"DDS {cost[str(COILS)]['dds'] - cost[v]['dds']:+.2f} dB")
    dds_cost = cost[str(COILS)]["dds"] - cost[v]["dds"]
    print(f"cc_speedup={speed['2']:.2f} cc_psnr_cost_db={dds_cost:.2f}")


if __name__ == "__main__":
    main()
