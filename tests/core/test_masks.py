"""Sampling masks: acceleration, centre blocks, determinism from explicit seeds."""

import numpy as np
import pytest

from contextmri_core.errors import ConfigError
from contextmri_core.physics import masks


@pytest.mark.parametrize("n,acc,cf", [(256, 4, 0.08), (256, 8, 0.04), (368, 4, 0.08), (320, 8, 0.04)])
def test_uniform1d_contextmri_centre_and_acceleration(n, acc, cf):
    m = masks.uniform1d(n, acc, seed=0)
    ncen = int(n * cf)
    start = n // 2 - ncen // 2
    assert m[start:start + ncen].all()
    assert m.sum() == n // acc
    assert np.array_equal(m, masks.uniform1d(n, acc, seed=0))
    assert not np.array_equal(m, masks.uniform1d(n, acc, seed=1))


def test_fastmri_random_and_equispaced():
    r = np.mean([masks.fastmri_random(368, 4, 0.08, seed=s).sum() for s in range(200)])
    assert abs(r - 368 / 4) < 2
    e = masks.fastmri_equispaced(368, 4, 0.08, seed=3)
    assert abs(e.sum() - 368 / 4) <= 3
    num_low = round(368 * 0.08)
    pad = (368 - num_low + 1) // 2
    assert e[pad:pad + num_low].all()


def test_poisson2d_acceleration_and_calibration():
    m = masks.poisson2d((128, 96), 8, seed=0, calib=(16, 16))
    assert m.shape == (128, 96)
    assert 6.5 < m.size / m.sum() < 9.5
    assert m[64 - 8:64 + 8, 48 - 8:48 + 8].all()
    assert np.array_equal(m, masks.poisson2d((128, 96), 8, seed=0, calib=(16, 16)))


def test_make_mask_specs_and_errors():
    assert masks.make_mask("uniform1d:4", (64, 32), seed=0).shape == (64, 32)
    assert masks.make_mask("poisson2d:8", (64, 64), seed=0).dtype == np.float32
    with pytest.raises(ConfigError, match="unknown kind"):
        masks.make_mask("radial:4", (64, 64), seed=0)
    with pytest.raises(ConfigError, match="KIND:ACCELERATION"):
        masks.make_mask("uniform1d", (64, 64), seed=0)
