"""DDS/DPS/CFG/ensembles against analytic truths: an oracle denoiser, counted network calls."""

import pytest
import torch

from contextmri_core.errors import ConfigError
from contextmri_core.physics.linop import Sense
from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.prior.schedule import ScheduleConfig, alphas_cumprod, evenly_spaced
from contextmri_core.sampling.consistency import cg_consistency
from contextmri_core.sampling.dds import DDSConfig, dds_sample
from contextmri_core.sampling.dps import dps_sample
from contextmri_core.sampling.ensemble import ensemble
from contextmri_core.sampling.guidance import guided_eps
from tests.phantom import phantom

ABAR = alphas_cumprod(ScheduleConfig()).float()


@pytest.fixture(scope="module")
def problem():
    img, maps, ksp = phantom(64, 64, 4, seed=5)
    mask = torch.from_numpy(to_2d(uniform1d(64, 4, seed=0), 64))
    op = Sense(maps[None].expand(2, -1, -1, -1), mask)
    x0 = torch.stack([img, 0.5 * img.flip(-1)])
    return x0, op, op.forward(x0)


def oracle(x0):
    """The denoiser that returns the true noise for a known x0."""
    def eps_fn(xt, t):
        a = ABAR[t].reshape(-1, 1, 1)
        return (xt - a.sqrt() * x0) / (1 - a).sqrt()
    return eps_fn


@pytest.mark.parametrize("eta", [0.0, 0.8])
def test_dds_with_oracle_denoiser_returns_x0(problem, eta):
    x0, op, y = problem
    g = torch.Generator().manual_seed(0)
    xt = torch.complex(torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g))
    out = dds_sample(oracle(x0), cg_consistency(op, y, 5.0, 5), xt, ABAR, evenly_spaced(20),
                     eta, generator=g)
    assert torch.allclose(out, x0, atol=1e-4 * float(x0.abs().max()))


def test_dds_data_consistency_pulls_a_wrong_prior_towards_the_data(problem):
    x0, op, y = problem
    wrong = oracle(torch.zeros_like(x0))  # a prior that believes in an empty image
    xt = torch.zeros_like(x0)
    out = dds_sample(wrong, cg_consistency(op, y, 5.0, 5), xt, ABAR, evenly_spaced(10), 0.0)
    resid = torch.linalg.vector_norm(op.forward(out) - y) / torch.linalg.vector_norm(y)
    assert float(resid) < 0.2


def test_dps_with_oracle_denoiser_returns_x0(problem):
    x0, op, y = problem
    g = torch.Generator().manual_seed(1)
    xt = torch.complex(torch.randn(x0.shape, generator=g), torch.randn(x0.shape, generator=g))
    out = dps_sample(oracle(x0), op, y, xt, ABAR, evenly_spaced(10), eta=0.0, generator=g)
    assert torch.allclose(out, x0, atol=1e-4 * float(x0.abs().max()))


class CountingNet:
    """eps = x * (1 + mean(tokens)): distinguishable conditional/unconditional outputs."""

    def __init__(self):
        self.batch_sizes = []

    def __call__(self, x, t, tokens):
        self.batch_sizes.append(x.shape[0])
        return x * (1 + tokens.mean(dim=(1, 2))).reshape(-1, 1, 1)


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
def test_cfg_is_one_batched_call_and_interpolates(scale):
    x = torch.randn(3, 8, 8, dtype=torch.complex64)
    t = torch.full((3,), 10)
    cond, uncond = torch.ones(3, 4, 2), torch.zeros(3, 4, 2)
    net = CountingNet()
    out = guided_eps(net, x, t, cond, uncond, scale)
    eps_c, eps_u = x * 2, x * 1
    assert len(net.batch_sizes) == 1
    assert net.batch_sizes[0] == (3 if scale in (0.0, 1.0) else 6)
    assert torch.allclose(out, eps_u + scale * (eps_c - eps_u))
    split_net = CountingNet()
    split = guided_eps(split_net, x, t, cond, uncond, scale, split=True)
    assert split_net.batch_sizes == ([3] if scale in (0.0, 1.0) else [3, 3])
    assert torch.allclose(split, out, atol=1e-6)


def test_one_network_call_per_dds_step(problem):
    x0, op, y = problem
    net = CountingNet()
    cond, uncond = torch.ones(2, 4, 2), torch.zeros(2, 4, 2)
    dds_sample(lambda x, t: guided_eps(net, x, t, cond, uncond, 2.0),
               cg_consistency(op, y, 5.0, 2), torch.zeros_like(x0), ABAR, evenly_spaced(7), 0.0)
    assert net.batch_sizes == [4] * 7


def test_custom_timesteps_and_progress(problem):
    x0, op, y = problem
    seen = []
    dds_sample(oracle(x0), cg_consistency(op, y, 1.0, 1), torch.zeros_like(x0), ABAR,
               [900, 400, 30], 0.0, progress=lambda i, n, t: seen.append((i, n, t)))
    assert seen == [(0, 3, 900), (1, 3, 400), (2, 3, 30)]


def test_dds_config_validation():
    with pytest.raises(ConfigError, match="eta"):
        DDSConfig(eta=1.5)
    with pytest.raises(ConfigError, match="descending"):
        DDSConfig(timesteps=(10, 500))
    with pytest.raises(ConfigError):
        evenly_spaced(0)


def test_ensemble_mean_and_std():
    vals = [torch.full((1, 2, 2), v, dtype=torch.complex64) for v in (1.0, 3.0)]
    mean, std = ensemble(lambda k: vals[k], 2)
    assert torch.allclose(mean.real, torch.full((1, 2, 2), 2.0))
    assert torch.allclose(std, torch.full((1, 2, 2), 1.0))
    _, std1 = ensemble(lambda k: vals[0], 1)
    assert torch.all(std1 == 0)
