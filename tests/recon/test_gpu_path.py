"""The GPU code path of the diffusion reconstruction, exercised on a CPU.

On CUDA the reconstructor autocasts the network (fp16/bf16) and evaluates both CFG halves in
one batched call. Here the same branch is forced by explicit settings (``autocast="on"``,
``cfg_call="batched"``) under ``torch.autocast("cpu", ...)``, run with half-precision weights
(``load_prior(dtype=...)``), and run on the shape-only ``meta`` device, where a tensor left on
the host fails (device mismatch) and so does any read of a value.

Tolerances (shipped model, one 32x32 phantom slice, 4 coils, uniform1d x4, 3 DDS steps,
CFG 2), as ``|x - x_fp32| / |x_fp32|``, measured on this CPU: one network call (eps) differs
by 4.3e-3 in bf16 and 5.4e-4 in fp16; through the sampler the whole reconstruction differs by
3.2e-2 with bf16 (autocast or bf16 weights alike) and 4.3e-3 with fp16: fp16 keeps 3 more
mantissa bits, which is why it is the GPU default. Asserted: ``TOLERANCE`` below. One batched
CFG call equals two calls to float32 round-off (< 1e-5).
"""

from collections import defaultdict

import pytest
import torch

from contextmri_core.errors import ConfigError
from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.prior.build import new_prior
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.execution import execution_plan
from contextmri_core.sampling.dds import DDSConfig
from tests.host_reads import count_host_reads
from tests.phantom import phantom

#: Largest relative L2 difference to the fp32 reconstruction we accept (see the docstring).
TOLERANCE = {"bf16": 6e-2, "fp16": 1e-2}
DDS = DDSConfig(steps=3, guidance=2.0, cg_iterations=5)
META_DDS = DDSConfig(steps=2, guidance=2.0, cg_iterations=5)


def _problem(n: int = 32, coils: int = 4, batch: int = 1):
    img, maps, ksp = phantom(n, n, coils, seed=5)
    mask = torch.from_numpy(to_2d(uniform1d(n, 4, seed=0), n))
    return (ksp[None].expand(batch, -1, -1, -1).clone(), mask,
            maps[None].expand(batch, -1, -1, -1).clone())


class BoundaryProbe:
    """Records dtypes and shapes at the model boundary: ``prior.eps`` (complex in and out)
    and the UNet inside it (real channels, the condition tokens, the output)."""

    def __init__(self, prior):
        self.seen = defaultdict(set)
        inner = prior.eps

        def eps(x, t, cond):
            out = inner(x, t, cond)
            self.seen["eps_in"].add(x.dtype)
            self.seen["eps_out"].add(out.dtype)
            self.seen["eps_batch"].add(x.shape[0])
            return out

        def pre(module, args, kwargs):
            sample = args[0]
            self.seen["unet_in"].add((sample.dtype, sample.shape[1], sample.is_complex()))
            self.seen["tokens"].add(kwargs["encoder_hidden_states"].dtype)

        def post(module, args, kwargs, output):
            self.seen["unet_out"].add(output.sample.dtype)

        prior.eps = eps
        self.handles = [prior.unet.register_forward_pre_hook(pre, with_kwargs=True),
                        prior.unet.register_forward_hook(post, with_kwargs=True)]
        self.prior = prior

    def close(self):
        for h in self.handles:
            h.remove()
        del self.prior.eps  # back to the class method


def _recon(prior, **settings):
    ksp, mask, maps = _problem()
    cfg = DiffusionReconConfig(dds=DDS, seed=3, **settings)
    return DiffusionReconstructor(prior, cfg)(ksp, mask, maps).image


def _rel(a, b) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.fixture(scope="module")
def prior():
    return load_prior(DEFAULT_MODEL_DIR)


@pytest.fixture(scope="module")
def fp32_image(prior):
    return _recon(prior, precision="fp32")


def test_plan_follows_the_device_unless_forced():
    cuda, cpu = execution_plan("cuda", "fp16"), execution_plan("cpu", "fp16")
    assert (cuda.autocast_dtype, cuda.cfg_one_call) == (torch.float16, True)
    assert (cpu.autocast_dtype, cpu.cfg_one_call) == (None, False)
    assert execution_plan("cuda:1", "fp32").autocast_dtype is None
    assert execution_plan("meta", "bf16") == execution_plan("meta", "fp16", cfg_call="batched")
    forced = execution_plan("cpu", "bf16", autocast="on", cfg_call="batched")
    assert (forced.device_type, forced.autocast_dtype, forced.cfg_one_call) == ("cpu", torch.bfloat16, True)
    assert execution_plan("cuda", "bf16", autocast="off", cfg_call="split").autocast_dtype is None
    with pytest.raises(ConfigError, match="autocast"):
        execution_plan("meta", "bf16", autocast="on")
    with pytest.raises(ConfigError, match="cfg_call"):
        DiffusionReconConfig(cfg_call="twice")
    with pytest.raises(ConfigError, match="autocast"):
        DiffusionReconConfig(autocast="yes")


def test_one_batched_cfg_call_equals_two_calls(prior, fp32_image):
    probe = BoundaryProbe(prior)
    try:
        batched = _recon(prior, precision="fp32", cfg_call="batched")
    finally:
        probe.close()
    assert probe.seen["eps_batch"] == {2}  # (conditional, unconditional) of one slice
    assert _rel(batched, fp32_image) < 1e-5


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_forced_gpu_branch_autocasts_inside_the_network_only(prior, fp32_image, precision):
    """``autocast="on"`` + one batched CFG call on a CPU: the network computes in half
    precision, the sampler around it stays complex64, the image stays near fp32."""
    probe = BoundaryProbe(prior)
    try:
        image = _recon(prior, precision=precision, autocast="on", cfg_call="batched")
    finally:
        probe.close()
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert probe.seen["eps_in"] == probe.seen["eps_out"] == {torch.complex64}
    assert probe.seen["eps_batch"] == {2}
    assert probe.seen["unet_in"] == {(torch.float32, 2, False)}  # 2 real channels, fp32 weights
    assert probe.seen["unet_out"] == {half}  # autocast ran the last layer in half precision
    assert image.dtype == torch.complex64 and image.device.type == "cpu"
    err = _rel(image, fp32_image)
    print(f"{precision} autocast: relative difference to fp32 {err:.2e}")
    assert 0 < err < TOLERANCE[precision]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_weights_keep_complex64_outside_the_network(fp32_image, precision):
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    prior = load_prior(DEFAULT_MODEL_DIR, dtype=half)
    probe = BoundaryProbe(prior)
    try:
        image = _recon(prior, precision="fp32", cfg_call="batched")
    finally:
        probe.close()
    assert probe.seen["unet_in"] == {(half, 2, False)} and probe.seen["tokens"] == {half}
    assert probe.seen["unet_out"] == {half}
    assert probe.seen["eps_out"] == {torch.complex64} and image.dtype == torch.complex64
    err = _rel(image, fp32_image)
    print(f"{precision} weights: relative difference to fp32 {err:.2e}")
    assert 0 < err < TOLERANCE[precision]


def _meta_prior(preset: str, size: int):
    with torch.device("meta"):
        return new_prior(preset, image_size=(size, size))


@pytest.mark.parametrize("preset,size", [("contextmri-small", 64), ("contextmri-paper", 320)])
def test_the_whole_reconstruction_runs_on_the_meta_device(preset, size):
    """Host inputs, a model on ``meta`` (the GPU stand-in): everything the reconstructor makes
    lands on that device (a host tensor mixed in would raise), nothing is read back, the
    inputs are copied over once before the loop and never inside it, CFG is one batched call
    (the plan of a non-CPU device), the image is complex64 on the device."""
    prior = _meta_prior(preset, size)
    ksp, mask, maps = _problem(size, coils=4, batch=2)
    per_step = []
    with count_host_reads() as reads:
        recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=META_DDS), device="meta",
                                       progress=lambda i, n, t: per_step.append(dict(reads)))
        probe = BoundaryProbe(prior)
        try:
            out = recon(ksp, mask, maps)
        finally:
            probe.close()
    assert recon.plan.cfg_one_call and recon.plan.autocast_dtype is None
    assert out.image.device.type == "meta" and out.image.dtype == torch.complex64
    assert out.image.shape == (2, size, size)
    assert probe.seen["eps_batch"] == {4} and probe.seen["unet_in"] == {(torch.float32, 2, False)}
    assert len(per_step) == META_DDS.steps and all(s == per_step[0] for s in per_step)
    assert reads["cross_device"] >= 3  # k-space, mask, maps: once, before the loop
    assert reads["scalar"] == reads["data_dependent"] == 0
