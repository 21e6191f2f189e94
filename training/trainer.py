"""``Trainer``: the prior, its EMA, the optimiser and the streaming data of one rank.

``train_step(batch)`` is one optimiser step on a ``training.data.Batch``; ``run()`` streams
batches (``training.loader``) to ``cfg.steps``, logs (``training.metrics``), validates
(``training.validation``) and checkpoints: ``OUT/model`` (EMA, last), ``OUT/model_best``
(EMA with the lowest validation loss) and ``OUT/train_state.pt`` (resume, mid-epoch).
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

from contextmri_core.io.models.checkpoint import save_prior
from contextmri_core.io.models.shards import ShardReader
from contextmri_core.prior.build import new_prior
from contextmri_core.prior.encoders.factory import EncoderConfig
from contextmri_core.prior.loss import epsilon_loss_at
from training import distributed
from training.augment import AugmentConfig
from training.config import FitConfig
from training.data import Batch, ShardDataset
from training.draws import draw, drop_mr
from training.loader import epochs, load_index, make_loader, resolve_patch, to_device
from training.lora import add_lora, merge_lora
from training.metrics import MetricsLog
from training.sampler import ShardBatchSampler
from training.samples import save_samples
from training.validation import Validator, fixed_subset
from training.warm_start import load_init, warm_start

log = logging.getLogger("training.fit")
STATE = "train_state.pt"


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


def build_prior(cfg: FitConfig, patch, dev: torch.device, init=None):
    """A fresh prior, or a warm start from ``init`` (the loaded ``cfg.init_from``; see
    ``training.warm_start``)."""
    enc = EncoderConfig.from_dict(cfg.encoder) if cfg.encoder else None
    with torch.random.fork_rng(devices=[]):  # initialisation from cfg.seed, global RNG untouched
        torch.manual_seed(cfg.seed)
        if cfg.init_from:
            prior, _ = warm_start(init if init is not None else cfg.init_from, enc, patch)
        else:
            prior = new_prior(cfg.preset, enc or EncoderConfig(), image_size=patch, **cfg.unet)
    return prior.to(dev).train()


def initial_model(cfg: FitConfig, d: distributed.Dist):
    """``cfg.init_from`` loaded (a published release: ``cfg.init_unet``, else the UNet the
    first training slice calls for), or None."""
    if not cfg.init_from:
        return None
    index = load_index(cfg.data, d)
    meta = None
    if index.entries:
        with ShardReader(index.entries[0].path) as reader:
            meta = reader.header.metadata[0]
    return load_init(cfg.init_from, cfg.init_unet, meta)


def lr_at(cfg: FitConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)


def autocast(cfg: FitConfig, dev: torch.device):
    if dev.type != "cuda" or cfg.precision == "fp32":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)


class _Stream:
    """A shard folder streamed by one rank: index, dataset, sampler, loader."""

    def __init__(self, directory: str, cfg: FitConfig, d: distributed.Dist, batch: int,
                 patch=None, augment: AugmentConfig = AugmentConfig(), workers: int = 0) -> None:
        self.index = load_index(directory, d)
        self.patch = resolve_patch(patch, self.index)
        self.dataset = ShardDataset(self.index.entries, self.patch, augment, cfg.seed)
        self.sampler = ShardBatchSampler([e.num_slices for e in self.index.entries], batch,
                                         cfg.seed, d.rank, d.world_size, cfg.shuffle_buffer)
        self.loader = make_loader(self.dataset, self.sampler, workers, cfg.prefetch_factor,
                                  d.device)


class Trainer:
    """Holds model, EMA, optimiser and data; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, cfg: FitConfig, d: distributed.Dist):
        self.cfg, self.d = cfg, d
        init = initial_model(cfg, d)
        patch = cfg.patch_size or (list(init.normalisation.image_size) if init is not None else None)
        augment = AugmentConfig.from_dict(cfg.augment)
        self.train = _Stream(cfg.data, cfg, d, cfg.batch_size, patch, augment, cfg.num_workers)
        self.patch = self.train.patch
        self.data = self.train.dataset
        sizes = sorted({(e.height, e.width) for e in self.train.index.entries})
        canvas = tuple(init.normalisation.canvas) if init is not None else None
        if canvas is not None and any(s != canvas for s in sizes):
            log.warning("the training images are %s but %s was trained on %s crops: they are "
                        "cropped or zero-padded to %s patches", sizes[:4], cfg.init_from, canvas,
                        tuple(self.patch))
        self.prior = build_prior(cfg, self.patch, d.device, init)
        if cfg.lora_rank > 0:
            self.prior.encoder.requires_grad_(False)
            add_lora(self.prior.unet, cfg.lora_rank, cfg.lora_alpha,
                     torch.Generator().manual_seed(cfg.seed))
        n_ood = int(round(cfg.ood_ratio * cfg.batch_size)) if cfg.ood_data else 0
        self.ood = _Stream(cfg.ood_data, cfg, d, n_ood, self.patch, augment) if n_ood else None
        self.validator = None  # rank 0 validates; the others wait
        if cfg.val_data:
            val_index = load_index(cfg.val_data, d, "validation")
            if d.is_main:
                self.validator = Validator(val_index, self.patch, cfg.val_slices,
                                           cfg.val_timesteps, cfg.seed, cfg.batch_size)
        self.ema = copy.deepcopy(self.prior).eval().requires_grad_(False)
        params = [p for p in self.prior.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.model = TrainNet(self.prior)
        if d.enabled:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.scaler = torch.amp.GradScaler(enabled=d.device.type == "cuda" and cfg.precision == "fp16")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_val, self.elapsed = math.inf, 0.0
        self.seen: List[tuple] = []  # (shard, slice, epoch) trained on, with cfg.log_batches
        self._last: Optional[Batch] = None
        self.metrics: Optional[MetricsLog] = None

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: Batch) -> float:
        """One optimiser step on ``batch``; returns this rank's loss."""
        cfg, dev = self.cfg, self.d.device
        for group in self.opt.param_groups:
            group["lr"] = lr_at(cfg, self.step)
        x, meta, seeds = self._mix_ood(batch)
        enc = self.prior.encoder
        fields = (len(enc.structured_config.fields)
                  if cfg.p_field_drop > 0 and hasattr(enc, "dropout_mask") else 0)
        t_range = tuple(cfg.t_window) if cfg.t_window else (0, len(self.prior.alphas_cumprod) - 1)
        dr = draw(seeds, tuple(x.shape[-2:]), t_range, cfg.p_uncond, cfg.p_mr_drop,
                  cfg.p_field_drop, fields)
        meta = drop_mr(meta, dr.drop_mr)
        drop = dr.drop.to(dev)
        fmask = dr.drop_fields.to(dev) if dr.drop_fields is not None else None
        with autocast(cfg, dev):
            loss = epsilon_loss_at(lambda xt, t: self.model(xt, t, meta, drop, fmask),
                                   self.prior.alphas_cumprod, x.to(dev, non_blocking=True),
                                   dr.t.to(dev), dr.noise.to(dev, non_blocking=True))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.prior.parameters(), cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        ema_update(self.ema, self.prior, cfg.ema_decay if self.step > cfg.warmup_steps else 0.0)
        self.step += 1
        if cfg.log_batches:
            self.seen.extend(batch.keys)
            log.info("rank %d step %d batch %s", self.d.rank, self.step,
                     [self._name(k) for k in batch.keys])
        return float(loss.detach())

    def _name(self, key) -> str:
        """``file:slice@epoch`` of a sample key."""
        return f"{self.data.entries[key[0]].path.name}:{key[1]}@{key[2]}"

    def _mix_ood(self, batch: Batch):
        """Replace the last ``round(ood_ratio * B)`` samples by out-of-distribution ones; the
        OOD stream's position follows the step, so a resumed run draws the same ones."""
        if self.ood is None:
            return batch.x, list(batch.meta), batch.seeds.tolist()
        per_epoch = self.ood.sampler.batches_per_epoch()
        self.ood.sampler.set_epoch(self.step // per_epoch, self.step % per_epoch)
        extra = next(iter(self.ood.loader))
        n = min(len(extra), len(batch))
        keep = len(batch) - n
        x = torch.cat([batch.x[:keep], extra.x[:n].to(batch.x.device)])
        return x, batch.meta[:keep] + extra.meta[:n], batch.seeds.tolist()[:keep] + extra.seeds.tolist()[:n]

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        cfg, d = self.cfg, self.d
        self.metrics = MetricsLog(Path(cfg.out), d.is_main, self.step)
        base, t0 = self.elapsed, time.time()
        window = {"loss": 0.0, "n": 0, "wait": 0.0, "slices": 0, "t": time.perf_counter()}
        items = to_device(epochs(self.train.loader, self.train.sampler, self.epoch,
                                 self.batch_in_epoch), d.device)
        try:
            while self.step < cfg.steps:
                t_wait = time.perf_counter()
                epoch, index, batch = next(items)
                window["wait"] += time.perf_counter() - t_wait
                batch = self._usable(batch)
                if batch is None:
                    self.epoch, self.batch_in_epoch = epoch, index + 1
                    continue
                window["loss"] += self.train_step(batch)
                window["n"] += 1
                window["slices"] += len(batch)
                self.epoch, self.batch_in_epoch = epoch, index + 1
                self.elapsed = base + time.time() - t0
                if self._after_step(window):
                    break
        finally:
            self.metrics.plot()
            self.metrics.close()
        self._report()

    def _usable(self, batch: Batch) -> Optional[Batch]:
        """The batch, or when all its slices were unreadable: the previous batch again on
        several ranks (every rank must step), nothing on one."""
        if len(batch):
            self._last = batch
            return batch
        log.warning("rank %d: a whole batch was unreadable", self.d.rank)
        return self._last if self.d.enabled else None

    def _after_step(self, w: dict) -> bool:
        """Logging, validation and checkpoints after a step; True when the run should end."""
        cfg, step = self.cfg, self.step
        timeout = cfg.max_minutes > 0 and self.elapsed > 60 * cfg.max_minutes
        done = step >= cfg.steps or timeout
        if step % cfg.log_every == 0 or done:
            loss = distributed.mean(self.d, w["loss"] / max(w["n"], 1))
            dt = time.perf_counter() - w["t"]
            rate = w["slices"] * self.d.world_size / max(dt, 1e-9)
            wait = distributed.mean(self.d, w["wait"] / max(dt, 1e-9))
            if self.d.is_main:
                log.info("step %d/%d loss %.4f lr %.2e %.1f slices/s data wait %.0f%% (%.0f s)",
                         step, cfg.steps, loss, lr_at(cfg, step), rate, 100 * wait, self.elapsed)
            self.metrics.log(step, epoch=self.epoch, train_loss=loss, lr=lr_at(cfg, step),
                             slices_per_s=rate, data_wait_frac=wait, elapsed_s=self.elapsed)
            w.update(loss=0.0, n=0, wait=0.0, slices=0, t=time.perf_counter())
        checkpoint = step % cfg.checkpoint_every == 0 or done
        validate = bool(cfg.val_data) and (
            done or (step % cfg.val_every == 0 if cfg.val_every else checkpoint))
        if validate:
            self._validate()
        if checkpoint:
            distributed.barrier(self.d)
            self.save()
            self._samples()
        if validate or checkpoint:
            w.update(slices=0, wait=0.0, t=time.perf_counter())  # rates count training only
        return done

    def _validate(self) -> None:
        if self.d.is_main:
            val = self.validator.loss(self.ema, self.d.device)
            log.info("step %d: validation loss %.4f (EMA)%s", self.step, val,
                     " - best so far" if val < self.best_val else "")
            self.metrics.log(self.step, epoch=self.epoch, val_loss=val, elapsed_s=self.elapsed)
            if val < self.best_val:
                self.best_val = val
                self._save_model("model_best", {"best_val_loss": val, "best_val_step": self.step})
        distributed.barrier(self.d)

    # ------------------------------------------------------------------ state
    def _save_model(self, name: str, extra: Optional[dict] = None) -> None:
        self.ema.info.update(self.provenance(), **(extra or {}))
        save_prior(merge_lora(self.ema) if self.cfg.lora_rank else self.ema,
                   Path(self.cfg.out) / name, overwrite=True)

    def save(self) -> None:
        """Rank 0: the EMA prior as a checkpoint + the training state for resuming."""
        if not self.d.is_main:
            return
        out = Path(self.cfg.out)
        self._save_model("model")
        state = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                 "world_size": self.d.world_size, "batch_size": self.cfg.batch_size,
                 "best_val": self.best_val, "opt": self.opt.state_dict(),
                 "prior": self.prior.state_dict(), "ema": self.ema.state_dict(),
                 "elapsed": self.elapsed, "config": self.cfg.to_dict()}
        tmp = out / f".{STATE}.partial"
        torch.save(state, tmp)
        tmp.replace(out / STATE)
        if self.metrics is not None:
            self.metrics.plot()
        log.info("step %d: saved %s", self.step, out / "model")

    def resume(self) -> bool:
        """Continue from ``OUT/train_state.pt`` at the batch after the last one trained."""
        path = Path(self.cfg.out) / STATE
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.d.device, weights_only=False)
        self.prior.load_state_dict(state["prior"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        self.best_val = float(state.get("best_val", math.inf))
        self.elapsed = float(state.get("elapsed", 0.0))
        same = (state.get("world_size"), state.get("batch_size")) == (self.d.world_size,
                                                                      self.cfg.batch_size)
        if not same and self.batch_in_epoch:
            log.warning("world size or batch size changed since %s: epoch %d starts afresh "
                        "instead of resuming at batch %d", path, self.epoch + 1, self.batch_in_epoch)
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch,
                 self.batch_in_epoch)
        return True

    def provenance(self) -> dict:
        return {"trained_steps": self.step, "world_size": self.d.world_size,
                "train_slices": len(self.data), "patch_size": list(self.patch),
                "fit_config": self.cfg.to_dict(), "train_seconds": round(self.elapsed, 1),
                "command": " ".join(sys.argv)}

    def _report(self) -> None:
        if not self.cfg.log_batches:
            return
        names = sorted({self._name(k) for k in self.seen})
        log.info("rank %d/%d trained on %d slices: %s", self.d.rank, self.d.world_size,
                 len(names), names)

    def _samples(self) -> None:
        if not self.d.is_main:
            return
        if self.validator is not None and len(self.validator.meta):
            x, meta = self.validator.x[:4], self.validator.meta[:4]
        else:
            x, meta = fixed_subset(self.train.index, self.patch, 4)
        path = save_samples(self.ema, x, meta, Path(self.cfg.out) / f"samples_{self.step:06d}.png")
        log.info("samples: %s", path)
