"""How much simulated subjects differ (``contextmri_core.synth.morphometry``), by age group:

- lateral-ventricle volume (ml): mean and spread (std / mean) across subjects;
- RMS change of distances between nearby structures in the brain (``brain_strain_rms``:
  singular values of the deformation gradient minus 1), e.g. between neighbouring folds;
- RMS non-rigid displacement of the cortex (mm);
- head width and length at MNI z = 15 mm: spread, and spread of their ratio (shape);
- smallest Jacobian determinant of the deformation (> 0: no folding) and cortical thinning.

    .venv/bin/python benchmarks/synth_variety.py [--subjects 12] [--ages 25 80]

Subjects are ``draw_morphology(default_rng([s, age]), age)`` for s = 0..N-1. The last line is
``ventricle_spread_young=<std/mean> strain_rms=<mean> ventricle_ratio_old_young=<ratio>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from contextmri_core.synth import morphometry as mm  # noqa: E402
from contextmri_core.synth.morphology import Morphology, draw_morphology  # noqa: E402


def measure(age: int, count: int) -> np.ndarray:
    """Rows: ventricle ml, width, length, strain, cortex RMS, min Jacobian, thinning."""
    rows = []
    for seed in range(count):
        m = draw_morphology(np.random.default_rng([seed, age]), age)
        rows.append((mm.ventricle_volume_ml(m), *mm.head_extent_mm(m), mm.brain_strain_rms(m),
                     mm.cortex_displacement_rms_mm(m), m.min_jacobian, m.thinning_mm))
    return np.asarray(rows)


def spread(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=12)
    p.add_argument("--ages", type=int, nargs="+", default=[25, 80])
    args = p.parse_args(argv)
    template = Morphology()
    width, length = mm.head_extent_mm(template)
    print(f"template: ventricles {mm.ventricle_volume_ml(template):.1f} ml, head "
          f"{width:.0f} x {length:.0f} mm")
    means = {}
    for age in args.ages:
        r = measure(age, args.subjects)
        means[age] = (r[:, 0].mean(), spread(r[:, 0]), r[:, 3].mean())
        print(f"age {age} ({args.subjects} subjects): ventricles {r[:, 0].mean():.1f} ml "
              f"(spread {spread(r[:, 0]):.1%}), distance change RMS {r[:, 3].mean():.1%}, "
              f"cortex moves {r[:, 4].mean():.1f} mm RMS, head width/length spread "
              f"{spread(r[:, 1]):.1%}/{spread(r[:, 2]):.1%} (shape {spread(r[:, 1] / r[:, 2]):.1%}),"
              f" min Jacobian {r[:, 5].min():.2f}, thinning {r[:, 6].mean():.2f} mm")
    young, old = min(args.ages), max(args.ages)
    print(f"ventricle_spread_young={means[young][1]:.3f} strain_rms={means[young][2]:.3f} "
          f"ventricle_ratio_old_young={means[old][0] / means[young][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
