"""training.prepare + training.fit: shards, a falling loss, resume, torchrun DDP on gloo."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from contextmri_core.io.models.checkpoint import load_prior
from contextmri_core.io.models.shards import list_shards, read_shard
from contextmri_core.physics.masks import make_mask
from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
from contextmri_core.sampling.dds import DDSConfig
from tests.phantom import phantom

ROOT = Path(__file__).resolve().parents[2]
TINY = {"preset": "contextmri-small",
        "unet": {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 8,
                 "attention_head_dim": 8, "cross_attention_dim": 32,
                 "addition_embed_type_num_heads": 2},
        "encoder": {"kind": "structured", "structured": {"dim": 32, "hidden": 32}},
        "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 100}


def run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    r = run(["-m", "contextmri_core.cli.main", "simulate", "--out", str(base / "sim"), "--seed", "3",
             "--n-subjects", "3", "0", "0", "--matrix", "32", "--slices", "2", "--coils", "4",
             "--formats", "ismrmrd", "--contrasts", "AXT2,AXFLAIR", "--lesion-probability", "1"])
    assert r.returncode == 0, r.stderr
    r = run(["-m", "training.prepare", str(base / "sim"), str(base / "shards"), "--size", "32", "32",
             "--annotations", str(base / "sim" / "annotations.csv")])
    assert r.returncode == 0, r.stderr
    (base / "fit.yaml").write_text(yaml.safe_dump(TINY))
    return base


def test_prepare_writes_normalised_targets_with_metadata_and_resumes(shards):
    files = list_shards(shards / "shards")
    assert len(files) == 6
    s = read_shard(files[0])
    assert s.x.shape == (2, 32, 32) and s.x.dtype == torch.complex64
    q = torch.quantile(s.x.abs().flatten(1), 0.99, dim=1)
    assert torch.allclose(q, torch.ones_like(q), atol=1e-3)
    assert s.metadata[0].anatomy == "brain" and s.metadata[0].slice_index == s.slices[0]
    assert s.prompts[0].startswith("brain, Slice ")
    r = run(["-m", "training.prepare", str(shards / "sim"), str(shards / "shards"), "--size", "32", "32"])
    assert "0 to do" in r.stderr


def test_fit_resumes_and_its_checkpoint_loads_in_the_reconstructor(shards):
    out = shards / "fit1"
    common = ["-m", "training.fit", "--config", str(shards / "fit.yaml"), "--data",
              str(shards / "shards"), "--out", str(out)]
    r = run(common + ["--steps", "3"])
    assert r.returncode == 0, r.stderr
    r = run(common + ["--steps", "5"])
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "at step 3" in r.stderr
    assert torch.load(out / "train_state.pt", weights_only=False)["step"] == 5
    prior = load_prior(out / "model")
    assert prior.info["trained_steps"] == 5
    img, maps, ksp = phantom(32, 32, 4)
    mask = torch.from_numpy(make_mask("uniform1d:4:0.3", (32, 32), seed=0))
    recon = DiffusionReconstructor(prior, DiffusionReconConfig(dds=DDSConfig(steps=2)))
    out_img = recon(ksp[None], mask, maps[None]).image
    assert out_img.shape == (1, 32, 32) and torch.isfinite(out_img).all()


def test_torchrun_two_ranks_see_different_data_and_only_rank0_writes(shards):
    out = shards / "ddp"
    r = run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
             "-m", "training.fit", "--config", str(shards / "fit.yaml"), "--data",
             str(shards / "shards"), "--out", str(out), "--steps", "3"])
    assert r.returncode == 0, r.stderr[-3000:]
    seen = {}
    for rank, ids in re.findall(r"rank (\d)/2 trained on \d+ distinct slices: \[([\d, ]*)\]", r.stderr):
        seen[int(rank)] = {int(i) for i in ids.split(",") if i.strip()}
    assert set(seen) == {0, 1}
    assert seen[0] and seen[1] and not (seen[0] & seen[1])
    written = sorted(p.name for p in out.iterdir())
    assert written == ["model", "samples_000003.png", "train_state.pt"]


def test_loss_falls_in_a_short_cpu_run(shards):
    from training.config import load_config
    from training.distributed import Dist
    from training.fit import Trainer

    cfg = load_config(shards / "fit.yaml", {"data": str(shards / "shards"),
                                            "out": str(shards / "fit2"), "steps": 40})
    t = Trainer(cfg, Dist())
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        idx = torch.randint(0, len(t.data), (4,), generator=g)
        losses.append(t.train_step(t.data.tensors[0][idx], idx))
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.7 * first, (first, last)


def test_finetune_with_lora_ood_mix_and_noise_window_saves_a_plain_checkpoint(shards):
    base = shards / "base"
    r = run(["-m", "training.fit", "--config", str(shards / "fit.yaml"), "--data",
             str(shards / "shards"), "--out", str(base), "--steps", "2"])
    assert r.returncode == 0, r.stderr
    out = shards / "ft"
    r = run(["-m", "training.finetune", "--init-from", str(base / "model"), "--data",
             str(shards / "shards"), "--out", str(out), "--steps", "3", "--batch-size", "2",
             "--lora-rank", "2", "--ood-data", str(shards / "shards"), "--ood-ratio", "0.5",
             "--t-window", "0", "300"])
    assert r.returncode == 0, r.stderr[-2000:]
    tuned, before = load_prior(out / "model"), load_prior(base / "model")
    assert tuned.info["fit_config"]["lora_rank"] == 2 and tuned.info["fit_config"]["lr"] == 1e-5
    assert set(tuned.unet.state_dict()) == set(before.unet.state_dict())  # LoRA merged away
    changed = [k for k, v in tuned.unet.state_dict().items() if not torch.equal(v, before.unet.state_dict()[k])]
    assert changed and all(any(t in k for t in ("to_q", "to_k", "to_v", "add_k_proj", "add_v_proj"))
                           for k in changed)
