"""Cost of the simulator (one process, one thread), per slice:

1. One-off per process: loading the templates; per subject: drawing it (deformation by
   scaling and squaring, ventricle field) and its first slice (atrophy-eroded template).
2. Truth-only slices (the training-shard path: tissue -> contrast -> bias, shading, phase; no
   coil maps, k-space or noise) at matrix 128 (1.875 mm), 256 (0.9 mm) and 320 (0.75 mm),
   5 mm slices (5 sub-planes), oblique coronal, one subject, physics contrast and
   domain-randomised.
3. A full ISMRMRD scan at 256 (0.9 mm) with 8 coils: coil maps, k-space with 2x readout
   oversampling, correlated noise and noise scan, written with ``write_ismrmrd``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth_speed.py [--repeats 3]

The last line is ``truth_s_per_slice_256=<s> scan_s_per_slice_256=<s>``. On a busy shared
machine, run it twice and take the lower figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contextmri_core.synth.protocols import draw_protocol  # noqa: E402
from contextmri_core.synth.scan import (  # noqa: E402
    SimConfig, draw_config_subject, scan_geometry, simulate_scan,
)
from contextmri_core.synth.templates import load_templates  # noqa: E402
from contextmri_core.synth.truth import draw_scan_fields, slice_truth  # noqa: E402

GRIDS = ((128, 240.0 / 128), (256, 0.9), (320, 0.75))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def truth_seconds(subject, matrix: int, spacing: float, protocol: str, repeats: int) -> float:
    """Median seconds per truth-only slice."""
    cfg = SimConfig(matrix=matrix, pixel_spacing_mm=spacing, slice_thickness_mm=5.0,
                    plane="coronal", oblique_max_deg=15.0, num_slices=repeats + 1)
    rng = np.random.default_rng(0)
    geom = scan_geometry(cfg, subject, rng, layout="spread")
    fields = draw_scan_fields(draw_protocol(protocol, rng), 8, 3.0, rng, rng, rng)
    times = [_timed(lambda: slice_truth(subject, geom, k, fields, rng, with_maps=False))[1]
             for k in range(repeats + 1)]
    return float(np.median(times[1:]))


def scan_seconds(subject, repeats: int) -> float:
    """Seconds per slice of a 4-slice 256x256 8-coil scan, simulated and written."""
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd

    cfg = SimConfig(matrix=256, pixel_spacing_mm=0.9, num_coils=8, num_slices=4,
                    slice_thickness_mm=5.0)
    rng = np.random.default_rng(1)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            protocol = draw_protocol("AXT2", rng)
            _, sec = _timed(lambda: write_ismrmrd(Path(tmp) / f"s{r}.h5",
                                                  simulate_scan(subject, protocol, cfg, rng)))
            times.append(sec / cfg.num_slices)
    return float(np.median(times))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    _, t_load = _timed(load_templates)
    base = SimConfig()
    subjects, t_subj = [], []
    for i in range(3):
        subj, sec = _timed(lambda: draw_config_subject(np.random.default_rng([7, i]), base, i))
        subjects.append(subj)
        t_subj.append(sec)
    print(f"templates: {t_load:.2f} s once per process; subject draw: "
          f"{np.median(t_subj):.2f} s (median of 3)")
    subject = subjects[0]
    truth_256 = 0.0
    for matrix, spacing in GRIDS:
        phys = truth_seconds(subject, matrix, spacing, "AXT2", args.repeats)
        rand = truth_seconds(subject, matrix, spacing, "SYNTH", args.repeats)
        print(f"truth-only {matrix}x{matrix} at {spacing:.3f} mm, 5 mm slice: "
              f"{phys:.3f} s/slice (physics), {rand:.3f} s/slice (domain-randomised)")
        truth_256 = phys if matrix == 256 else truth_256
    scan = scan_seconds(subject, max(1, args.repeats - 1))
    print(f"full ISMRMRD scan 256x256, 8 coils, 4 slices, written: {scan:.3f} s/slice")
    print(f"truth_s_per_slice_256={truth_256:.3f} scan_s_per_slice_256={scan:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
