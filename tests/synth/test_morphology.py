"""Anatomy variety from one template: subjects differ by ~15 % (ventricles, distances between
folds, head shape), the deformation never folds, and atrophy follows age."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.synth import morphometry as mm
from contextmri_core.synth.deformation import jacobian_determinant
from contextmri_core.synth.morphology import Morphology, atrophy_level, draw_morphology


def _draw(age: int, count: int = 5):
    return [draw_morphology(np.random.default_rng([seed, age]), age) for seed in range(count)]


@pytest.fixture(scope="module")
def young():
    return _draw(25)


@pytest.fixture(scope="module")
def old():
    return _draw(80)


def test_the_deformation_is_diffeomorphic(young, old):
    for m in young + old:
        assert m.deformation is not None
        assert jacobian_determinant(m.deformation).min() > 0
        assert m.min_jacobian > 0


def test_young_subjects_differ_by_about_15_percent(young):
    template = mm.ventricle_volume_ml(Morphology())
    vents = np.array([mm.ventricle_volume_ml(m) for m in young])
    spread = vents.std() / vents.mean()
    assert 0.06 < spread < 0.35, vents  # ventricle size: ~15 % (measured 0.15 over 12)
    assert abs(vents.mean() / template - 1) < 0.25
    strains = [mm.brain_strain_rms(m) for m in young]
    assert all(0.10 < s < 0.22 for s in strains), strains  # fold distances: ~16 % RMS
    shifts = [mm.cortex_displacement_rms_mm(m) for m in young]
    assert all(2.5 < s < 8.0 for s in shifts), shifts  # folds move by ~5 mm RMS
    widths, lengths = np.array([mm.head_extent_mm(m) for m in young]).T
    assert widths.std() / widths.mean() > 0.025 and lengths.std() / lengths.mean() > 0.025
    assert np.std(widths / lengths) / np.mean(widths / lengths) > 0.03  # head shape


def test_atrophy_follows_age(young, old):
    assert all(m.thinning_mm == 0 and m.atrophy == 0 for m in young)  # none below 30 y
    assert np.mean([m.thinning_mm for m in old]) > 0.4
    vent_young = np.mean([mm.ventricle_volume_ml(m) for m in young])
    vent_old = np.mean([mm.ventricle_volume_ml(m) for m in old])
    assert vent_old > 1.25 * vent_young
    levels = [atrophy_level(80, np.random.default_rng(s)) for s in range(50)]
    assert 0.7 < np.median(levels) < 1.2 and np.std(levels) > 0.15  # random around the age


def test_zero_strength_is_the_template_and_draws_stay_aligned():
    a = draw_morphology(np.random.default_rng(3), 25, deformation_strength=0.0)
    assert a.deformation is None and a.scale_xyz == (1.0, 1.0, 1.0)
    rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
    draw_morphology(rng_a, 60, deformation_strength=0.0, atrophy_strength=0.0)
    draw_morphology(rng_b, 60)
    assert rng_a.uniform() == rng_b.uniform()  # later draws do not depend on the strengths
