"""``python -m training.fit --data SHARDS --out MODEL [--config fit.yaml] [flags]``: train the
conditioned prior with the epsilon-matching loss.

AdamW with warm-up, EMA of the weights (the EMA is what gets saved), gradient clipping,
autocast on GPUs, condition dropout for classifier-free guidance (p_uncond), MR-parameter
dropout (TR/TE/TI/FA together, p_mr_drop) and, for the structured encoder, per-field dropout.
Multi-GPU / multi-node: ``torchrun --nproc_per_node N -m training.fit ...`` (DDP; NCCL on
GPUs, gloo on CPUs); every rank sees its own part of the data; only rank 0 writes. Resumes
from ``OUT/train_state.pt`` when it exists. The same command runs on one CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.io.models.checkpoint import load_prior, save_prior
from contextmri_core.io.models.shards import list_shards, load_shards
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.encoders.factory import EncoderConfig
from contextmri_core.prior.loss import epsilon_loss
from training import distributed
from training.config import FitConfig, load_config
from training.lora import add_lora, merge_lora
from training.samples import save_samples

log = logging.getLogger("training.fit")
MR_FIELDS = ("tr_ms", "te_ms", "ti_ms", "flip_angle_deg")
STATE = "train_state.pt"


def drop_mr(meta: List[ScanMetadata], p: float, g: torch.Generator) -> List[ScanMetadata]:
    """ContextMRI's MR-parameter dropout: TR/TE/TI/FA removed together with probability p."""
    keep = torch.rand(len(meta), generator=g) >= p
    none = {f: None for f in MR_FIELDS}
    return [m if k else dataclasses.replace(m, **none) for m, k in zip(meta, keep.tolist())]


class TrainNet(torch.nn.Module):
    """What DDP wraps: condition encoding and the network in one forward, so the gradients
    of the (trainable) encoder are synchronised too."""

    def __init__(self, prior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, xt, t, meta, drop, fields=None):
        enc = self.prior.encoder
        cond = enc(meta, drop, fields) if fields is not None else enc(meta, drop)
        return self.prior.eps(xt, t, cond)


def _dropouts(prior, meta, cfg: FitConfig, g: torch.Generator):
    """(metadata with MR dropout, whole-condition drop (B,), per-field drop (B,F) or None)."""
    b = len(meta)
    drop = torch.rand(b, generator=g) < cfg.p_uncond
    meta = drop_mr(meta, cfg.p_mr_drop, g)
    fields = None
    if cfg.p_field_drop > 0 and hasattr(prior.encoder, "dropout_mask"):
        shape = prior.encoder.dropout_mask(b, g)[1].shape  # (B, number of fields)
        fields = torch.rand(shape, generator=g) < cfg.p_field_drop
    return meta, drop, fields


def _build(cfg: FitConfig, image_size, dev):
    if cfg.init_from:
        prior = load_prior(cfg.init_from)
    else:
        enc = EncoderConfig.from_dict(cfg.encoder) if cfg.encoder else EncoderConfig()
        prior = new_prior(cfg.preset, enc, image_size=image_size, **cfg.unet)
    return prior.to(dev).train()


def _lr(cfg: FitConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


@torch.no_grad()
def _ema_update(ema, model, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)


def _autocast(cfg: FitConfig, dev: torch.device):
    if dev.type != "cuda" or cfg.precision == "fp32":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)


class Trainer:
    """Holds model, EMA, optimiser and data; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, cfg: FitConfig, d: distributed.Dist):
        self.cfg, self.d = cfg, d
        x, self.meta, _ = load_shards(list_shards(cfg.data))
        self.data = TensorDataset(x, torch.arange(x.shape[0]))
        self.prior = _build(cfg, tuple(x.shape[-2:]), d.device)
        if cfg.lora_rank > 0:
            self.prior.encoder.requires_grad_(False)
            add_lora(self.prior.unet, cfg.lora_rank, cfg.lora_alpha,
                     torch.Generator().manual_seed(cfg.seed))
        self.ood = load_shards(list_shards(cfg.ood_data))[:2] if cfg.ood_data else None
        self.ema = copy.deepcopy(self.prior).eval().requires_grad_(False)
        params = [p for p in self.prior.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model = TrainNet(self.prior)
        if d.enabled:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.scaler = torch.amp.GradScaler(enabled=d.device.type == "cuda" and cfg.precision == "fp16")
        self.g = torch.Generator().manual_seed(cfg.seed * 1000 + d.rank)
        self.step, self.epoch = 0, 0
        self.seen: List[int] = []  # sample indices this rank trained on (for tests and logs)

    def _loader(self) -> DataLoader:
        sampler = DistributedSampler(self.data, num_replicas=self.d.world_size, rank=self.d.rank,
                                     shuffle=True, seed=self.cfg.seed, drop_last=True)
        sampler.set_epoch(self.epoch)
        return DataLoader(self.data, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True)

    def train_step(self, x: torch.Tensor, idx: torch.Tensor) -> float:
        cfg, dev = self.cfg, self.d.device
        for group in self.opt.param_groups:
            group["lr"] = _lr(cfg, self.step)
        x, meta = self._mix_ood(x, [self.meta[i] for i in idx.tolist()])
        meta, drop, fields = _dropouts(self.prior, meta, cfg, self.g)
        drop = drop.to(dev)
        fields = fields.to(dev) if fields is not None else None
        with _autocast(cfg, dev):
            loss = epsilon_loss(lambda xt, t: self.model(xt, t, meta, drop, fields),
                                self.prior.alphas_cumprod, x.to(dev), self.g if dev.type == "cpu" else None,
                                t_range=tuple(cfg.t_window) if cfg.t_window else None)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.prior.parameters(), cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        _ema_update(self.ema, self.prior, cfg.ema_decay if self.step > cfg.warmup_steps else 0.0)
        self.step += 1
        self.seen.extend(idx.tolist())
        return float(loss.detach())

    def _mix_ood(self, x: torch.Tensor, meta: List[ScanMetadata]):
        """Replace the last ``round(ood_ratio * B)`` samples by out-of-distribution ones."""
        n = int(round(self.cfg.ood_ratio * x.shape[0])) if self.ood is not None else 0
        if n == 0:
            return x, meta
        ox, ometa = self.ood
        pick = torch.randint(0, ox.shape[0], (n,), generator=self.g)
        return torch.cat([x[:-n], ox[pick]]), meta[:-n] + [ometa[i] for i in pick.tolist()]

    def save(self) -> None:
        """Rank 0: the EMA prior as a checkpoint + the training state for resuming."""
        if not self.d.is_main:
            return
        out = Path(self.cfg.out)
        self.ema.info.update(self.provenance())
        save_prior(merge_lora(self.ema) if self.cfg.lora_rank else self.ema, out / "model",
                   overwrite=True)
        state = {"step": self.step, "epoch": self.epoch, "opt": self.opt.state_dict(),
                 "prior": self.prior.state_dict(), "ema": self.ema.state_dict(),
                 "elapsed": self.elapsed, "config": self.cfg.to_dict()}
        tmp = out / f".{STATE}.partial"
        torch.save(state, tmp)
        tmp.replace(out / STATE)
        log.info("step %d: saved %s", self.step, out / "model")

    def resume(self) -> bool:
        path = Path(self.cfg.out) / STATE
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.d.device, weights_only=False)
        self.prior.load_state_dict(state["prior"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.g.manual_seed(self.cfg.seed * 1000 + self.d.rank + 7919 * self.step)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def provenance(self) -> dict:
        return {"trained_steps": self.step, "world_size": self.d.world_size,
                "train_slices": len(self.data), "fit_config": self.cfg.to_dict(),
                "train_seconds": round(self.elapsed, 1), "command": " ".join(sys.argv)}

    def run(self) -> None:
        cfg, t0 = self.cfg, time.time()
        base = getattr(self, "elapsed", 0.0)
        losses: List[float] = []
        while self.step < cfg.steps:
            for x, idx in self._loader():
                losses.append(self.train_step(x, idx))
                self.elapsed = base + time.time() - t0
                if self.step % cfg.log_every == 0 and self.d.is_main:
                    log.info("step %d/%d loss %.4f lr %.2e (%.0f s)", self.step, cfg.steps,
                             sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:]),
                             _lr(cfg, self.step), self.elapsed)
                timeout = cfg.max_minutes > 0 and self.elapsed > 60 * cfg.max_minutes
                if self.step % cfg.checkpoint_every == 0 or self.step >= cfg.steps or timeout:
                    distributed.barrier(self.d)
                    self.save()
                    self._samples()
                if self.step >= cfg.steps or timeout:
                    self._report()
                    return
            self.epoch += 1

    def _report(self) -> None:
        ids = sorted(set(self.seen))
        log.info("rank %d/%d trained on %d distinct slices: %s", self.d.rank, self.d.world_size,
                 len(ids), ids if len(ids) <= 64 else f"{ids[:64]} ...")

    def _samples(self) -> None:
        if not self.d.is_main:
            return
        idx = torch.linspace(0, len(self.data) - 1, 4).long()
        x = self.data.tensors[0][idx]
        meta = [self.meta[i] for i in idx.tolist()]
        path = save_samples(self.ema, x, meta, Path(self.cfg.out) / f"samples_{self.step:06d}.png")
        log.info("samples: %s", path)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML file with FitConfig fields")
    p.add_argument("--data", help="directory of training shards (python -m training.prepare)")
    p.add_argument("--out", help="output directory: OUT/model is the checkpoint")
    for name, typ in (("steps", int), ("batch-size", int), ("lr", float), ("seed", int),
                      ("checkpoint-every", int), ("max-minutes", float), ("preset", str),
                      ("init-from", str), ("log-every", int)):
        p.add_argument(f"--{name}", type=typ, dest=name.replace("-", "_"), help=f"FitConfig.{name.replace('-', '_')}")
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
    cfg = load_config(args.config or base_config, overrides)
    d = distributed.setup()
    try:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, d)
        trainer.elapsed = 0.0
        if not args.no_resume:
            trainer.resume()
        if d.is_main:
            log.info("training %s: %.2fM parameters, %d slices, world size %d, device %s",
                     cfg.preset, trainer.prior.num_parameters() / 1e6, len(trainer.data),
                     d.world_size, d.device)
        trainer.run()
    finally:
        distributed.teardown(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
