"""Time one DDS step of the small preset: 128x128, 8 coils, batch 4 (CFG guidance 2: the
network sees batch 8 in one call). Prints seconds per step, the network's and everything
else's share, peak memory, and as its LAST line ``outside_network_share=<fraction>``.

    .venv/bin/python benchmarks/dds_step.py [--steps 6] [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.prior.build import new_prior
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.sampling.dds import DDSConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, c, b = args.size, args.coils, args.batch
    prior = new_prior("contextmri-small", image_size=(n, n))
    g = torch.Generator().manual_seed(0)
    maps = torch.complex(torch.randn(b, c, n, n, generator=g), torch.randn(b, c, n, n, generator=g))
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    kspace = torch.complex(torch.randn(b, c, n, n, generator=g), torch.randn(b, c, n, n, generator=g))
    mask = torch.from_numpy(to_2d(uniform1d(n, 4, seed=0), n))
    net_time = [0.0]
    recon = DiffusionReconstructor(
        prior, DiffusionReconConfig(dds=DDSConfig(steps=args.steps, guidance=2.0), batch_size=b),
        device=args.device)
    inner = recon._net

    def timed_net(x, t, tokens):
        if args.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = inner(x, t, tokens)
        if args.device == "cuda":
            torch.cuda.synchronize()
        net_time[0] += time.perf_counter() - t0
        return out

    recon._net = timed_net
    recon(kspace[:1], mask, maps[:1])  # warm-up (allocator, kernels)
    net_time[0] = 0.0
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    recon(kspace, mask, maps)
    total = time.perf_counter() - t0
    per_step, net_step = total / args.steps, net_time[0] / args.steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"device={args.device} threads={args.threads} size={n} coils={c} batch={b} "
          f"params={prior.num_parameters() / 1e6:.2f}M steps={args.steps}")
    print(f"seconds_per_step={per_step:.3f} network_seconds_per_step={net_step:.3f} "
          f"other_seconds_per_step={per_step - net_step:.3f}")
    print(f"peak_memory_mib={peak:.0f} ({'GPU allocated' if args.device == 'cuda' else 'process RSS'})")
    print(f"outside_network_share={(per_step - net_step) / per_step:.3f}")


if __name__ == "__main__":
    main()
