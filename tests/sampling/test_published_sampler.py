"""The published ContextMRI sampler: timesteps exactly as diffusers' ``DDIMScheduler`` gives
them for a saved scheduler config, abar moving to ``t - T // N``, CFG read as published, and
the ``paper`` preset's values."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from contextmri_core.prior.schedule import (ScheduleConfig, alphas_cumprod, published_pairs,
                                            scheduler_timesteps)
from contextmri_core.recon.diffusion import DiffusionReconConfig
from contextmri_core.recon.presets import CONTEXTMRI, PAPER, preset_config, with_overrides
from contextmri_core.sampling.dds import DDSConfig, dds_sample
from contextmri_core.sampling.guidance import guided_eps
from tests.prior.published_layout import SCHEDULER
from tests.sampling.test_dds import oracle, problem  # noqa: F401  (fixture)

CONFIGS = [SCHEDULER,
           dict(SCHEDULER, steps_offset=0),
           dict(SCHEDULER, timestep_spacing="trailing"),
           dict(SCHEDULER, timestep_spacing="linspace"),
           dict(num_train_timesteps=1000)]


def _saved(tmp_path, cfg) -> dict:
    """The scheduler config as ``save_config`` writes it (DDPMScheduler, as published)."""
    DDPMScheduler(**cfg).save_config(str(tmp_path))
    return json.loads((tmp_path / "scheduler_config.json").read_text())


@pytest.mark.parametrize("cfg", CONFIGS, ids=["sd-leading-offset1", "leading", "trailing",
                                              "linspace", "defaults"])
@pytest.mark.parametrize("n", [1, 7, 30, 100, 333, 1000])
def test_timesteps_equal_diffusers_ddim_for_the_saved_config(tmp_path, cfg, n):
    saved = _saved(tmp_path, cfg)
    ddim = DDIMScheduler.from_config(saved)  # what recon_mri.py does
    ddim.set_timesteps(n)
    assert scheduler_timesteps(ScheduleConfig.from_diffusers(saved), n) == ddim.timesteps.tolist()


def test_the_published_100_steps_and_their_previous_abar(tmp_path):
    schedule = ScheduleConfig.from_diffusers(_saved(tmp_path, SCHEDULER))
    ts, prev = published_pairs(schedule, 100)
    assert ts[:3] == [991, 981, 971] and ts[-1] == 1 and len(ts) == 100
    assert prev == [t - 10 for t in ts] and prev[-1] == -9  # the last step lands on abar = 1
    assert torch.allclose(alphas_cumprod(schedule).float(),
                          DDPMScheduler(**SCHEDULER).alphas_cumprod, rtol=1e-5)


def test_dds_moves_to_the_previous_timestep_it_is_given(problem):  # noqa: F811
    """With ``previous`` the DDIM update uses abar at those timesteps: an oracle denoiser still
    returns x0 at eta 0, and the intermediate x_t follow the given abar exactly."""
    x0, op, y = problem
    abar = alphas_cumprod(ScheduleConfig()).float()
    ts, prev = [991, 661, 331, 1], [661, 331, 1, -9]
    seen = []

    def eps_fn(xt, t):
        seen.append((int(t[0]), xt.clone()))
        return oracle(x0)(xt, t)

    g = torch.Generator().manual_seed(0)
    xt = torch.complex(torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g))
    out = dds_sample(eps_fn, lambda v: v, xt, abar, ts, 0.0, previous=prev)
    assert torch.allclose(out, x0, atol=1e-4 * float(x0.abs().max()))
    eps0 = oracle(x0)(seen[0][1], torch.tensor([991]))
    a = float(abar[661])
    assert torch.allclose(seen[1][1], a ** 0.5 * x0 + (1 - a) ** 0.5 * eps0, atol=1e-4)


def _spy_net():
    calls = []

    def net(x, t, tokens):
        calls.append(tokens.clone())
        return tokens[:, :1, :1].expand(-1, x.shape[-2], x.shape[-1]).to(torch.complex64)
    return net, calls


@pytest.mark.parametrize("scale, expected", [(0.0, "u"), (0.5, "c"), (1.0, "c"),
                                             (2.0, "u + 2 (c - u)")])
def test_published_cfg_rule(scale, expected):
    """s = 0: the empty prompt alone; s <= 1: the conditional prediction alone (0.5 does not
    mix); s > 1: the usual formula."""
    x, t = torch.zeros(2, 4, 4, dtype=torch.complex64), torch.tensor([5, 5])
    cond, uncond = torch.full((2, 3, 2), 3.0), torch.full((2, 3, 2), 1.0)
    for split in (False, True):
        net, calls = _spy_net()
        eps = guided_eps(net, x, t, cond, uncond, scale, split, rule="published")
        value = {"u": 1.0, "c": 3.0, "u + 2 (c - u)": 5.0}[expected]
        assert torch.allclose(eps, torch.full_like(eps, value))
        if scale <= 1:
            assert len(calls) == 1 and torch.equal(calls[0], uncond if scale == 0 else cond)
    net, _ = _spy_net()  # our reading of 0.5 mixes the two
    assert torch.allclose(guided_eps(net, x, t, cond, uncond, 0.5).real, torch.full((2, 4, 4), 2.0))


def test_paper_preset_is_the_published_recon_mri_defaults():
    d = PAPER.dds
    assert (d.steps, d.eta, d.xi, d.cg_iterations, d.guidance) == (100, 0.8, 5.0, 5, 1.0)
    assert (d.clip, d.support_mask, d.timestep_rule, d.cfg_rule) == (0.0, False, "scheduler",
                                                                     "published")
    assert PAPER.precision == "fp32"
    assert CONTEXTMRI == DiffusionReconConfig()  # ours: unchanged defaults
    assert preset_config("published") is PAPER and preset_config("contextmri") is CONTEXTMRI
    assert preset_config("published", "contextmri") is CONTEXTMRI
    mixed = with_overrides(PAPER, steps=20, support_mask=True, precision="bf16", guidance=None)
    assert (mixed.dds.steps, mixed.dds.support_mask, mixed.precision, mixed.dds.guidance) == (
        20, True, "bf16", 1.0)
    with pytest.raises(Exception, match="cfg_rule"):
        DDSConfig(cfg_rule="sometimes")
