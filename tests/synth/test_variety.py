"""Per-scan draws of plane, grid and slice thickness from ranges."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.errors import ConfigError
from contextmri_core.synth.scan import SimConfig
from contextmri_core.synth.variety import (
    ScanRanges, draw_scan_config, matrix_choices, parse_choices, parse_range,
)

WIDE = ScanRanges(planes=("axial", "coronal", "sagittal"), oblique_max_deg=20.0,
                  matrix=(128, 320), pixel_spacing_mm=(0.5, 2.0), fov_range_mm=(160.0, 280.0),
                  slice_thickness_mm=(1.0, 6.0))


def test_matrix_choices_step_by_16_and_include_the_ends():
    assert matrix_choices(128, 320) == list(range(128, 321, 16))
    assert matrix_choices(100, 130) == [100, 116, 130]
    assert matrix_choices(128, 128) == [128]


def test_draws_stay_in_range_and_give_head_sized_fovs():
    rng = np.random.default_rng(0)
    cfgs = [draw_scan_config(rng, WIDE, SimConfig()) for _ in range(300)]
    spacing = np.array([c.pixel_spacing_mm for c in cfgs])
    fov = np.array([c.matrix * c.pixel_spacing_mm for c in cfgs])
    assert {c.plane for c in cfgs} == {"axial", "coronal", "sagittal"}
    assert all(c.matrix in matrix_choices(128, 320) for c in cfgs)
    assert spacing.min() > 0.49 and spacing.max() < 2.01 and np.ptp(spacing) > 1.2
    assert fov.min() >= 160 - 0.5 and fov.max() <= 280 + 0.5
    np.testing.assert_allclose(fov, np.round(fov), atol=1e-9)  # console-rounded FOV
    thick = np.array([c.slice_thickness_mm for c in cfgs])
    assert thick.min() >= 1.0 and thick.max() <= 6.0 and np.ptp(thick) > 4
    assert all(c.oblique_max_deg == 20.0 for c in cfgs)
    fine = [c.matrix for c in cfgs if c.pixel_spacing_mm < 0.6]
    coarse = [c.matrix for c in cfgs if c.pixel_spacing_mm > 1.8]
    assert min(fine) >= 272 and max(coarse) <= 144  # fine pixels need large matrices


def test_without_a_spacing_range_the_fov_is_fixed_and_draws_repeat():
    ranges = ScanRanges(matrix=(128, 128))
    cfg = draw_scan_config(np.random.default_rng(1), ranges, SimConfig())
    assert (cfg.plane, cfg.matrix, cfg.pixel_spacing_mm, cfg.fov_mm) == ("axial", 128, None, 240)
    assert cfg.spacing_mm == pytest.approx(240 / 128)
    a = draw_scan_config(np.random.default_rng(7), WIDE, SimConfig())
    b = draw_scan_config(np.random.default_rng(7), WIDE, SimConfig())
    assert a == b


def test_bad_ranges_name_the_field():
    with pytest.raises(ConfigError, match="planes"):
        ScanRanges(planes=("axial", "transverse"))
    with pytest.raises(ConfigError, match="pixel_spacing_mm"):
        ScanRanges(pixel_spacing_mm=(2.0, 1.0))
    with pytest.raises(ConfigError, match="--matrix"):
        parse_range([320, 128], "matrix", int)
    with pytest.raises(ConfigError, match="--planes 'axial,tilted': choose from"):
        parse_choices("axial,tilted", ("axial", "coronal"), "planes")
    assert parse_range([1.5], "slice-thickness") == (1.5, 1.5)
