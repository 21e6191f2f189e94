"""The diffusion reconstruction on a CUDA GPU: no host-device synchronisation inside the DDS
loop, images as good as on the CPU in every precision, inputs and coil maps on the device.

Marked ``cuda``: CI runs ``-m "not cuda"`` and ``tests/conftest.py`` skips them on a machine
without CUDA; ``bash benchmarks/gpu_check.sh`` runs them on a GPU machine. Their CPU twins
(the same branch forced on a CPU) are ``tests/recon/test_gpu_path.py`` and
``tests/sampling/test_host_sync.py``.
"""

import numpy as np
import pytest
import torch

from contextmri_core.data.scan import SliceData
from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.models import DEFAULT_MODEL_DIR
from contextmri_core.physics.masks import make_mask
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.recon.evaluate import score_slices
from contextmri_core.recon.prepare import PrepConfig, prepare_slices, undersample
from contextmri_core.sampling.dds import DDSConfig
from contextmri_core.synth.scan import SimConfig, simulate

pytestmark = pytest.mark.cuda
DEVICE = "cuda"
DDS = DDSConfig(steps=20, guidance=2.0)


def _sync_debug(mode: str) -> None:
    torch.cuda.set_sync_debug_mode(mode)


@pytest.fixture(scope="module")
def scan():
    """A simulated T2 brain slice (128x128, 8 coils) and its fully sampled slices."""
    cfg = SimConfig(matrix=128, num_slices=2, num_coils=8, readout_oversampling=1,
                    lesion_probability=1.0)
    sim = simulate(991, "AXT2", cfg)
    slices = [SliceData(kspace=sim.kspace[s], mask=np.ones(sim.kspace.shape[-2:], np.float32),
                        metadata=sim.slice_metadata(s)) for s in range(2)]
    return slices, sim.noise


@pytest.fixture(scope="module")
def x4(scan):
    """(reference MVUE on the CPU, undersampled x4 slices)."""
    slices, noise = scan
    full = prepare_slices(slices, noise)
    mask = make_mask("uniform1d:4", slices[0].mask.shape, seed=2)
    return mvue(full.kspace, full.maps), [undersample(s, mask) for s in slices], noise


@pytest.fixture(scope="module")
def prior():
    return load_prior(DEFAULT_MODEL_DIR)


def test_no_host_device_sync_inside_the_dds_loop(prior, x4):
    """``set_sync_debug_mode("error")`` from the end of the first step (cuFFT/cuBLAS set-up
    happens there) to the end of the last: any ``.item()``, D2H copy or data-dependent op
    inside the loop raises."""
    _, slices, noise = x4
    b = prepare_slices(slices, noise, PrepConfig(device=DEVICE))
    steps = []

    def progress(i, n, t):
        steps.append(i)
        _sync_debug("error" if i + 1 < n else "default")

    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDS, cfg_call="batched"),
                                   DEVICE, progress=progress)
    try:
        out = recon(b.kspace, b.mask, b.maps, b.metadata)
    finally:
        _sync_debug("default")
    assert steps == list(range(DDS.steps))
    assert out.image.device.type == "cuda" and out.image.dtype == torch.complex64


@pytest.fixture(scope="module")
def cpu_scores(prior, x4):
    ref, slices, noise = x4
    b = prepare_slices(slices, noise)
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDS, precision="fp32", seed=1))
    return score_slices(recon(b.kspace, b.mask, b.maps, b.metadata).image, ref)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_images_are_as_good_as_the_cpu_ones(prior, x4, cpu_scores, precision):
    """Different random numbers on the two devices, so not the same image: the same quality
    against the fully sampled reference (PSNR within 0.5 dB, SSIM within 0.02)."""
    ref, slices, noise = x4
    b = prepare_slices(slices, noise, PrepConfig(device=DEVICE))
    cfg = DiffusionReconConfig(dds=DDS, precision=precision, seed=1)
    out = DiffusionReconstructor(prior, cfg, DEVICE)(b.kspace, b.mask, b.maps, b.metadata)
    assert out.image.device.type == "cuda" and out.image.dtype == torch.complex64
    gpu = score_slices(out.image.cpu(), ref)
    print(f"{precision}: cpu {cpu_scores} gpu {gpu}")
    assert gpu["psnr"] > cpu_scores["psnr"] - 0.5 and gpu["ssim"] > cpu_scores["ssim"] - 0.02


def test_preparation_on_cuda_equals_the_cpu(x4):
    """Prewhitening, coil maps (ESPIRiT) and masks computed on the GPU stay there and match
    the CPU's (maps up to float round-off; ESPIRiT fixes the phase to coil 0)."""
    _, slices, noise = x4
    cpu = prepare_slices(slices, noise)
    gpu = prepare_slices(slices, noise, PrepConfig(device=DEVICE))
    for name in ("kspace", "mask", "maps"):
        g, c = getattr(gpu, name), getattr(cpu, name)
        assert g.device.type == "cuda" and g.dtype == c.dtype, name
        err = float(torch.linalg.vector_norm(g.cpu() - c) / torch.linalg.vector_norm(c))
        assert err < 1e-3, (name, err)


@pytest.mark.parametrize("precision,tol", [("fp32", 5e-3), ("bf16", 2e-2), ("fp16", 5e-3)])
def test_network_on_cuda_matches_the_cpu(precision, tol):
    """One network call, GPU (fp32 runs convolutions in TF32) vs CPU fp32."""
    g = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(4, 128, 128, generator=g), torch.randn(4, 128, 128, generator=g))
    t = torch.tensor([999, 700, 300, 20])
    with torch.no_grad():
        cpu_prior = load_prior(DEFAULT_MODEL_DIR)
        ref = cpu_prior.eps(x, t, cpu_prior.encode([None] * 4))
        gpu_prior = load_prior(DEFAULT_MODEL_DIR, DEVICE)
        plan = DiffusionReconstructor(gpu_prior, DiffusionReconConfig(precision=precision), DEVICE).plan
        with plan.autocast():
            out = gpu_prior.eps(x.to(DEVICE), t.to(DEVICE), gpu_prior.encode([None] * 4))
    assert out.device.type == "cuda" and out.dtype == torch.complex64
    err = float(torch.linalg.vector_norm(out.cpu() - ref) / torch.linalg.vector_norm(ref))
    print(f"{precision}: relative difference {err:.2e}")
    assert err < tol
