"""``python -m training.finetune --init-from MODEL --data SHARDS --out DIR``: continue training
a checkpoint on new data with a reduced learning rate (default 1e-5 and 500 steps, as in the
stroke fine-tuning paper), optionally only LoRA adapters on the attention projections
(``--lora-rank``), mixing in an out-of-distribution set (``--ood-data`` at ``--ood-ratio``)
and/or training only a noise-level window (``--t-window LO HI``). Same machinery, resume
and torchrun support as ``training.fit``. ``--init-from`` may be the published ContextMRI
release: its UNet is fine-tuned in its own convention (readout along rows, published prompt
vocabulary; prepare the shards at its size, ``--size 320 320``) and saved as a contextmri
checkpoint that keeps that convention and the paper's sampler settings."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from training import fit


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init-from", required=True,
                   help="model folder to start from: a contextmri checkpoint, the published "
                        "ContextMRI MRI_checkpoint/ or one UNet folder of it")
    p.add_argument("--unet", help="published --init-from: fastmri or skm-tea (default: chosen "
                                  "from the training data's metadata)")
    p.add_argument("--data", required=True, help="training shards of the new data")
    p.add_argument("--out", required=True, help="output directory (OUT/model)")
    p.add_argument("--config", help="optional YAML with more FitConfig fields")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lora-rank", type=int, default=0, help="0: full fine-tuning")
    p.add_argument("--ood-data", help="shards of an out-of-distribution set to mix in")
    p.add_argument("--ood-ratio", type=float, default=0.0)
    p.add_argument("--t-window", type=int, nargs=2, metavar=("LO", "HI"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch-size", type=int, nargs=2, metavar=("H", "W"),
                   help="training crop (default: the size the checkpoint was trained on)")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (default 0)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    a = _parser().parse_args(argv)
    yaml_lines = [f"lora_rank: {a.lora_rank}", f"ood_ratio: {a.ood_ratio}", "warmup_steps: 10",
                  "checkpoint_every: 250"]
    if a.ood_data:
        yaml_lines.append(f"ood_data: {a.ood_data!r}")
    if a.unet:
        yaml_lines.append(f"init_unet: {a.unet!r}")
    if a.t_window:
        yaml_lines.append(f"t_window: [{a.t_window[0]}, {a.t_window[1]}]")
    argv2 = ["--init-from", a.init_from, "--data", a.data, "--out", a.out, "--steps", str(a.steps),
             "--lr", str(a.lr), "--seed", str(a.seed)]
    if a.batch_size:
        argv2 += ["--batch-size", str(a.batch_size)]
    if a.patch_size:
        argv2 += ["--patch-size", str(a.patch_size[0]), str(a.patch_size[1])]
    if a.num_workers is not None:
        argv2 += ["--num-workers", str(a.num_workers)]
    return fit.main(argv2, extra_yaml="\n".join(yaml_lines), base_config=a.config)


if __name__ == "__main__":
    sys.exit(main())
