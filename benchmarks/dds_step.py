"""Time one DDS step of the small preset: 128x128, 8 coils, batch 4 (CFG guidance 2: the
network sees batch 8 in one call). Prints seconds per step, the network's and everything
else's share, peak memory, and as its LAST line ``outside_network_share=<fraction>``.

    .venv/bin/python benchmarks/dds_step.py [--steps 6] [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Dict, Optional

import torch

from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.model import DiffusionPrior
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.sampling.dds import DDSConfig


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def random_problem(size: int, coils: int, batch: int, device: str = "cpu"):
    """Random unit-norm maps, random k-space and a uniform1d x4 mask (timing only)."""
    g = torch.Generator().manual_seed(0)
    shape = (batch, coils, size, size)
    maps = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    kspace = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    mask = torch.from_numpy(to_2d(uniform1d(size, 4, seed=0), size))
    return kspace.to(device), mask.to(device), maps.to(device)


def measure_step(prior: Optional[DiffusionPrior] = None, size: int = 128, coils: int = 8,
                 batch: int = 4, steps: int = 6, guidance: float = 2.0, device: str = "cpu",
                 cg_iterations: int = 10, precision: str = "fp32") -> Dict[str, float]:
    """Seconds per DDS step (total and inside the network) for one batch, after a warm-up."""
    prior = prior or new_prior("contextmri-small", image_size=(size, size))
    kspace, mask, maps = random_problem(size, coils, batch, device)
    recon = DiffusionReconstructor(
        prior, DiffusionReconConfig(dds=DDSConfig(steps=steps, guidance=guidance,
                                                  cg_iterations=cg_iterations),
                                    batch_size=batch, precision=precision), device=device)
    inner, net_time = recon._net, [0.0]

    def timed_net(x, t, tokens):
        _sync(device)
        t0 = time.perf_counter()
        out = inner(x, t, tokens)
        _sync(device)
        net_time[0] += time.perf_counter() - t0
        return out

    recon._net = timed_net
    recon(kspace[:1], mask, maps[:1])  # warm-up (allocator, kernels)
    net_time[0] = 0.0
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    recon(kspace, mask, maps)
    _sync(device)
    total = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"seconds_per_step": total / steps, "network_seconds_per_step": net_time[0] / steps,
            "outside_network_share": (total - net_time[0]) / total, "peak_mib": peak,
            "params_m": prior.num_parameters() / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cg", type=int, default=10, help="CG iterations per DDS step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = measure_step(size=args.size, coils=args.coils, batch=args.batch, steps=args.steps,
                     device=args.device, cg_iterations=args.cg)
    print(f"device={args.device} threads={args.threads} size={args.size} coils={args.coils} "
          f"batch={args.batch} params={r['params_m']:.2f}M steps={args.steps} cg={args.cg}")
    print(f"seconds_per_step={r['seconds_per_step']:.3f} "
          f"network_seconds_per_step={r['network_seconds_per_step']:.3f} "
          f"other_seconds_per_step={r['seconds_per_step'] - r['network_seconds_per_step']:.3f}")
    print(f"peak_memory_mib={r['peak_mib']:.0f} "
          f"({'GPU allocated' if args.device.startswith('cuda') else 'process RSS'})")
    print(f"outside_network_share={r['outside_network_share']:.3f}")


if __name__ == "__main__":
    main()
