"""Signal equations against hand-computed values, and the contrast orderings they must produce."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.synth import tissue as T
from contextmri_core.synth.protocols import BRAIN_PROTOCOLS, draw_protocol
from contextmri_core.synth.image import tissue_weights
from contextmri_core.synth.anatomy import TISSUES


def test_spin_echo_matches_the_formula():
    got = T.spin_echo(0.7, 830.0, 80.0, tr_ms=500.0, te_ms=10.0)
    assert got == pytest.approx(0.7 * (1 - np.exp(-500 / 830)) * np.exp(-10 / 80))


def test_spin_echo_limits():
    assert T.spin_echo(1.0, 1000.0, 100.0, tr_ms=1e9, te_ms=0.0) == pytest.approx(1.0)
    assert T.spin_echo(1.0, 1000.0, 100.0, tr_ms=0.0, te_ms=10.0) == pytest.approx(0.0)


def test_inversion_recovery_matches_the_formula_and_nulls_at_the_null_time():
    got = T.inversion_recovery(0.8, 1330.0, 110.0, 9000.0, 100.0, 2500.0)
    want = 0.8 * abs(1 - 2 * np.exp(-2500 / 1330) + np.exp(-9000 / 1330)) * np.exp(-100 / 110)
    assert got == pytest.approx(want)
    ti = T.flair_null_ti_ms(4200.0, 9000.0)
    assert T.inversion_recovery(1.0, 4200.0, 1700.0, 9000.0, 100.0, ti) == pytest.approx(0, abs=1e-12)
    assert ti == pytest.approx(4200 * np.log(2 / (1 + np.exp(-9000 / 4200))))


def test_spoiled_gradient_echo_matches_the_formula_and_the_ernst_angle():
    e1 = np.exp(-250 / 830)
    a = np.deg2rad(70)
    want = 0.69 * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-3 / 53)
    assert T.spoiled_gradient_echo(0.69, 830.0, 53.0, 250.0, 3.0, 70.0) == pytest.approx(want)
    angles = np.linspace(1, 89, 881)
    sig = T.spoiled_gradient_echo(1.0, 830.0, 53.0, 250.0, 0.0, angles)
    assert angles[np.argmax(sig)] == pytest.approx(np.rad2deg(np.arccos(e1)), abs=0.2)


def test_gadolinium_shortens_t1_only_where_it_is_taken_up():
    table = T.tissue_table(3.0)
    assert T.with_contrast_agent(table["wm"]) == table["wm"]
    post = T.with_contrast_agent(table["lesion_enhancing"])
    assert post.t1_ms < 0.6 * table["lesion_enhancing"].t1_ms


def test_field_strength_lengthens_t1():
    assert T.tissue_table(3.0)["wm"].t1_ms == pytest.approx(830)
    assert T.tissue_table(1.5)["wm"].t1_ms < T.tissue_table(3.0)["wm"].t1_ms


def _signals(name: str, seed: int, field: float):
    protocol = draw_protocol(name, np.random.default_rng(seed), field)
    w = tissue_weights(protocol, T.tissue_table(field))
    return {t: w[i] for i, t in enumerate(TISSUES)}, protocol


@pytest.mark.parametrize("field", [1.5, 3.0])
@pytest.mark.parametrize("seed", range(6))
def test_protocol_contrasts(seed, field):
    flair, p = _signals("AXFLAIR", seed, field)
    assert flair["csf"] < 0.1 * flair["wm"], p  # FLAIR nulls CSF
    assert flair["lesion"] > flair["gm"] > flair["wm"], p
    t2, p = _signals("AXT2", seed, field)
    assert t2["csf"] == max(t2[t] for t in ("csf", "gm", "wm", "lesion")), p
    assert t2["gm"] > t2["wm"], p
    for name in ("AXT1", "AXT1PRE"):
        t1, p = _signals(name, seed, field)
        assert t1["wm"] > t1["gm"] > t1["csf"], p
        assert t1["fat"] > t1["wm"], p
    post, p = _signals("AXT1POST", seed, field)
    pre, _ = _signals("AXT1PRE", seed, field)
    assert post["lesion_enhancing"] > 1.3 * pre["lesion_enhancing"], p
    assert post["choroid"] > post["wm"], p


@pytest.mark.parametrize("name", sorted(BRAIN_PROTOCOLS))
def test_protocol_draws_stay_in_their_ranges_and_repeat(name):
    spec = BRAIN_PROTOCOLS[name]
    for seed in range(10):
        p = draw_protocol(name, np.random.default_rng(seed))
        assert p == draw_protocol(name, np.random.default_rng(seed))
        variant = next(v for v in spec.variants if v[0] == p.sequence)
        assert variant[1][0] - 5 <= p.tr_ms <= variant[1][1] + 5
        assert variant[2][0] - 0.5 <= p.te_ms <= variant[2][1] + 0.5
        assert (p.ti_ms is not None) == spec.inversion
        assert p.contrast == spec.contrast
