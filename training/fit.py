"""``python -m training.fit --data SHARDS --out MODEL [--config fit.yaml] [flags]``: train the
conditioned prior with the epsilon-matching loss.

Data stream from the shard folder (``training.prepare``): slices are read one at a time
(memory-mapped) in ``num_workers`` DataLoader processes, so memory does not grow with the
data; every rank reads its own part of each epoch (shards in a new random order per epoch,
slices shuffled within ``shuffle_buffer``), every slice once per epoch. Shards may differ in
matrix size: samples are cropped (random) or zero-padded to ``patch_size``; optional
physical augmentations (``augment:``: random phase, intensity shading, left-right flips,
resampling to a random pixel spacing). AdamW with warm-up, EMA of the weights (the EMA is
what gets saved), gradient clipping, autocast on GPUs, condition dropout for classifier-free
guidance (p_uncond), MR-parameter dropout (TR/TE/TI/FA together, p_mr_drop) and, for the
structured encoder, per-field dropout. With ``val_data`` the EMA's epsilon loss on a fixed
validation subset is tracked and the best model kept (``OUT/model_best``). Writes
``OUT/model``, ``OUT/metrics.csv``, ``OUT/loss.png`` (and TensorBoard events when
tensorboard is installed). Multi-GPU / multi-node: ``torchrun --nproc_per_node N -m
training.fit ...`` (DDP; NCCL on GPUs, gloo on CPUs); only rank 0 writes. Resumes from
``OUT/train_state.pt`` when it exists, at the batch after the last one trained. The same
command runs on one CPU.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

import yaml

from training import distributed
from training.config import load_config
from training.trainer import STATE, Trainer, TrainNet  # noqa: F401 - public names

log = logging.getLogger("training.fit")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML file with FitConfig fields")
    p.add_argument("--data", help="directory of training shards (python -m training.prepare)")
    p.add_argument("--out", help="output directory: OUT/model is the checkpoint")
    p.add_argument("--val-data", dest="val_data", help="directory of validation shards")
    for name, typ in (("steps", int), ("batch-size", int), ("lr", float), ("seed", int),
                      ("checkpoint-every", int), ("max-minutes", float), ("preset", str),
                      ("init-from", str), ("log-every", int), ("num-workers", int),
                      ("val-every", int)):
        p.add_argument(f"--{name}", type=typ, dest=name.replace("-", "_"), help=f"FitConfig.{name.replace('-', '_')}")
    p.add_argument("--patch-size", type=int, nargs=2, dest="patch_size", metavar=("H", "W"),
                   help="FitConfig.patch_size: training crop (default: the data's matrix)")
    p.add_argument("--no-resume", action="store_true", help="ignore OUT/train_state.pt")
    return p


def main(argv: Optional[List[str]] = None, extra_yaml: str = "",
         base_config: Optional[str] = None) -> int:
    """``extra_yaml``/``base_config``: settings from ``training.finetune`` (flags win)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "no_resume")}
    overrides = {**(yaml.safe_load(extra_yaml) or {}), **{k: v for k, v in overrides.items() if v is not None}}
    if overrides.get("patch_size"):
        overrides["patch_size"] = list(overrides["patch_size"])
    cfg = load_config(args.config or base_config, overrides)
    d = distributed.setup()
    try:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, d)
        if not args.no_resume:
            trainer.resume()
        if d.is_main:
            log.info("training %s: %.2fM parameters, %d slices in %d shards, patch %s, world "
                     "size %d, device %s, %d data workers", cfg.preset,
                     trainer.prior.num_parameters() / 1e6, len(trainer.data),
                     len(trainer.data.entries), trainer.patch, d.world_size, d.device,
                     cfg.num_workers)
        trainer.run()
    finally:
        distributed.teardown(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
