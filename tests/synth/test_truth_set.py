"""Truth-only training targets: native grids, normalisation, metadata that matches the draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contextmri_core.synth import truth_set as ts
from contextmri_core.synth.scan import SimConfig
from contextmri_core.synth.variety import ScanRanges

SMALL = ts.TruthSetConfig(
    ranges=ScanRanges(planes=("axial", "coronal", "sagittal"), oblique_max_deg=20.0,
                      matrix=(32, 48), pixel_spacing_mm=(4.0, 6.0), fov_range_mm=(140, 260),
                      slice_thickness_mm=(1.0, 6.0), domain_random_fraction=0.5),
    base=SimConfig(snr=None), slices_per_subject=5, slices_per_scan=2, coil_counts=(4, 8))


@pytest.fixture(scope="module")
def groups():
    subject = ts.draw_truth_subject(3, 1, SMALL)
    return [ts.render_group(3, 1, subject, g, SMALL) for g in ts.group_ids(SMALL)]


def test_groups_split_the_subject_s_slices(groups):
    assert SMALL.groups_per_subject == 3 and [g.info["slices"] for g in groups] == [2, 2, 1]
    assert [len(g.metadata) for g in groups] == [2, 2, 1]


def test_native_grid_normalisation_and_metadata(groups):
    for g in groups:
        n = g.info["matrix"]
        assert g.x.shape == (g.info["slices"], n, n) and g.x.dtype == torch.complex64
        p99 = torch.quantile(g.x.abs().reshape(len(g.x), -1), 0.99, dim=1)
        np.testing.assert_allclose(p99.numpy(), 1.0, rtol=1e-4)
        assert (g.scale > 0).all() and g.x.abs().max() < 5
        for m, idx, prompt in zip(g.metadata, g.slices, g.prompts):
            assert m.slice_index == idx and f"Slice {idx}" in prompt
            assert m.slice_plane == g.info["slice_plane"] in ("axial", "coronal", "sagittal")
            assert m.pixel_spacing_mm == pytest.approx(g.info["pixel_spacing_mm"])
            assert 4.0 - 0.1 < m.pixel_spacing_mm < 6.0 + 0.1
            assert m.slice_thickness_mm == g.info["slice_thickness_mm"]
            if g.info["domain_randomised"]:
                assert m.contrast is None and m.tr_ms is None and "SYNTH" in g.info["protocol"]
            else:
                assert m.contrast is not None and m.tr_ms is not None
    assert len({g.info["matrix"] for g in groups}) >= 1


def test_same_seed_same_bytes_other_group_differs(groups):
    again = ts.render_group(3, 1, ts.draw_truth_subject(3, 1, SMALL), 0, SMALL)
    assert again.x.numpy().tobytes() == groups[0].x.numpy().tobytes()
    assert again.metadata == groups[0].metadata
    assert groups[1].x.shape != groups[0].x.shape or not torch.equal(groups[1].x, groups[0].x)


def test_the_truth_carries_coil_shading_bias_and_phase(groups):
    x = groups[0].x[0]
    inside = x.abs() > 0.2
    assert float(x.angle()[inside].std()) > 0.05  # background phase
