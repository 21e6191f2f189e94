"""No host-device synchronisation inside the sampler loop, counted on a CPU.

On a GPU every ``.item()``, ``float(t)``, ``bool(t)`` (an ``if`` on a tensor), ``.cpu()``,
``.tolist()`` or data-dependent op stalls the host until the device has caught up; inside a
loop of DDS steps that serialises host and device once per step. ``tests/host_reads.py``
counts those reads while the same code runs here; the sampler's ``progress`` callback, called
once at the end of every step, takes a snapshot, so the reads of each step are the difference
between two snapshots. (On a CUDA machine ``tests/recon/test_cuda.py`` checks the same with
``torch.cuda.set_sync_debug_mode("error")``.)
"""

import pytest
import torch

from contextmri_core.physics.cg import conjugate_gradient
from contextmri_core.physics.linop import Sense
from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.encoders.factory import EncoderConfig
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.sampling.dds import DDSConfig
from tests.host_reads import count_host_reads
from tests.phantom import phantom

TINY = dict(block_out_channels=[8, 8, 8, 8], norm_num_groups=8, attention_head_dim=8,
            cross_attention_dim=32, addition_embed_type_num_heads=2)


@pytest.fixture(scope="module")
def tiny_prior():
    """A small random prior (the values do not matter here, only what the loop reads)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        enc = EncoderConfig.from_dict({"kind": "structured", "structured": {"dim": 32, "hidden": 32}})
        return new_prior("contextmri-small", enc, image_size=(32, 32), **TINY).eval()


@pytest.fixture(scope="module")
def problem():
    img, maps, ksp = phantom(32, 32, 4, seed=1)
    mask = torch.from_numpy(to_2d(uniform1d(32, 4, seed=0), 32))
    return ksp[None].expand(2, -1, -1, -1).clone(), mask, maps[None].expand(2, -1, -1, -1).clone()


def test_the_counter_sees_the_early_stop_check_of_cg(problem):
    """The probe can fail: CG with a tolerance reads one flag per iteration; without one
    (the DDS setting) it reads nothing."""
    ksp, mask, maps = problem
    op = Sense(maps, mask)
    rhs = op.adjoint(ksp * mask)
    for tol, expected in ((1e-12, 6), (0.0, 0)):
        with count_host_reads() as reads:
            conjugate_gradient(lambda v: v + op.normal(v), rhs, n_iter=6, tol=tol)
        assert reads["scalar"] == expected, (tol, dict(reads))


def _reads_per_step(prior, problem, steps, **settings):
    ksp, mask, maps = problem
    snapshots = []
    with count_host_reads() as reads:
        recon = DiffusionReconstructor(
            prior, DiffusionReconConfig(dds=DDSConfig(steps=steps, guidance=2.0, cg_iterations=4),
                                        **settings),
            progress=lambda i, n, t: snapshots.append((i, dict(reads))))
        recon(ksp, mask, maps)
    return snapshots, dict(reads)


@pytest.mark.parametrize("settings", [
    {},  # the CPU plan: CFG as two calls, no autocast
    {"precision": "bf16", "autocast": "on", "cfg_call": "batched"},  # the GPU plan
    {"sampler": "dps"},
    {"ensemble_size": 2},
], ids=["cpu-plan", "gpu-plan", "dps", "ensemble"])
def test_no_host_read_inside_the_sampler_loop(tiny_prior, problem, settings):
    short, short_total = _reads_per_step(tiny_prior, problem, 2, **settings)
    long, long_total = _reads_per_step(tiny_prior, problem, 4, **settings)
    assert len(long) == 4 * settings.get("ensemble_size", 1)
    between_steps = [(a, b) for (_, a), (i, b) in zip(long, long[1:]) if i > 0]
    assert len(between_steps) == 3 * settings.get("ensemble_size", 1)
    assert all(a == b for a, b in between_steps), long  # nothing read from one step to the next
    assert long_total == short_total  # and the count does not grow with the steps
    # what is read happens once per sample, outside the loop (the schedule, the timesteps),
    # and once per call (the intensity scale of the result)
    assert long_total.get("scalar", 0) == long_total.get("data_dependent", 0) == 0, long_total
