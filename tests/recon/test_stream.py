"""The streamed-reconstruction stages without any socket: settings from properties, the
fallback when the primary reconstructor or the preparation fails."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.errors import ConfigError
from contextmri_core.io.raw.ismrmrd_reader import record_from_acquisition
from contextmri_core.recon.classical import SenseRecon
from contextmri_core.recon.stream import StreamSettings, recon_stream
from tests import mrd_helpers as h


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    header, acqs = h.read_stream(h.synthetic_scan(tmp_path_factory.mktemp("s") / "s.h5"))
    return header, [record_from_acquisition(a) for a in acqs]


def test_settings_from_properties_convert_and_name_bad_fields():
    s = StreamSettings.from_properties({"steps": "3", "guidance": "2.5", "phase": "true",
                                        "batch-size": "2", "model": "", "repetition": "1",
                                        "N_dimension": "contrast"})
    assert (s.steps, s.guidance, s.phase, s.batch_size, s.model, s.repetition) == (
        3, 2.5, True, 2, None, 1)
    with pytest.raises(ConfigError, match="steps"):
        StreamSettings.from_properties({"steps": "many"})
    with pytest.raises(ConfigError, match="method"):
        StreamSettings.from_properties({"method": "magic"})


def test_a_failing_primary_falls_back_to_sense_and_says_why(stream):
    header, records = stream

    def broken():
        raise RuntimeError("CUDA out of memory")

    outs = list(recon_stream(records, header, StreamSettings(device="cpu"), broken))
    assert [o.slice_index for o in outs] == [0, 1]
    assert all(o.fallback and "CUDA out of memory" in o.error for o in outs)
    assert outs[0].method == "sense" and np.isfinite(outs[0].image).all()
    ok = list(recon_stream(records, header, StreamSettings(device="cpu"), SenseRecon))
    np.testing.assert_allclose(np.abs(ok[0].image), np.abs(outs[0].image), rtol=1e-5)
    assert ok[0].error is None and ok[0].attributes["prompt"].startswith("brain, Slice 0")


def test_unusable_calibration_falls_back_to_zero_filled(stream):
    header, records = stream
    few = [r for r in records if r.e1 % 4 == 0 or r.flags & (1 << 18)]  # ~no ACS block left
    outs = list(recon_stream(few, header, StreamSettings(device="cpu"), SenseRecon))
    assert all(o.method == "zero_filled" and "ACS" in o.error for o in outs)
    with pytest.raises(Exception, match="ACS"):
        list(recon_stream(few, header, StreamSettings(device="cpu", fallback="none"), SenseRecon))


def test_time_budget_stops_the_sampler_and_the_fallback_takes_over(stream, tmp_path):
    from contextmri_core.io.models.checkpoint import load_prior
    from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
    from contextmri_core.recon.stream import TimeBudgetExceeded, budget_progress
    from contextmri_core.sampling.dds import DDSConfig

    header, records = stream
    prior = load_prior(h.tiny_model(tmp_path / "m"))
    steps = []
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=3)))
    settings = StreamSettings(device="cpu", batch_size=1, time_budget_s=1e-6)
    outs = list(recon_stream(records, header, settings, lambda: recon))
    assert all(o.fallback and o.method == "sense" and "TimeBudgetExceeded" in o.error
               for o in outs)
    generous = StreamSettings(device="cpu", batch_size=1, time_budget_s=600.0)
    outs = list(recon_stream(records, header, generous, lambda: recon))
    assert all(o.error is None and o.method == "dds" for o in outs)
    cb = budget_progress(lambda: "time budget spent", lambda i, n, t: steps.append(i))
    with pytest.raises(TimeBudgetExceeded, match="time budget spent at sampler step 1/5"):
        cb(0, 5, 999)
    assert steps == [0]  # the inner callback still saw the step
    assert budget_progress(None, None) is None
