"""training.prepare + training.fit from the command line: native-size shards with a manifest,
resume, a falling loss, fine-tuning. (DDP: test_multinode.py; the data pipeline in-process:
test_trainer.py.)"""

import json
import os
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
from tests.training.shard_data import TINY

ROOT = Path(__file__).resolve().parents[2]


def run(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    r = run(["-m", "contextmri_core.cli.main", "simulate", "--out", str(base / "raw" / "m32"),
             "--seed", "3", "--n-subjects", "3", "0", "0", "--matrix", "32", "--slices", "2",
             "--coils", "4", "--formats", "ismrmrd", "--contrasts", "AXT2,AXFLAIR",
             "--lesion-probability", "1"])
    assert r.returncode == 0, r.stderr
    r = run(["-m", "contextmri_core.cli.main", "simulate", "--out", str(base / "raw" / "m40"),
             "--seed", "4", "--n-subjects", "1", "0", "0", "--matrix", "40", "--slices", "2",
             "--coils", "4", "--formats", "ismrmrd", "--contrasts", "AXT2"])
    assert r.returncode == 0, r.stderr
    r = run(["-m", "training.prepare", str(base / "raw"), str(base / "shards"),
             "--annotations", str(base / "raw" / "m32" / "annotations.csv")])
    assert r.returncode == 0, r.stderr
    (base / "fit.yaml").write_text(yaml.safe_dump(TINY))
    return base


def test_prepare_keeps_native_sizes_writes_a_manifest_and_resumes(shards):
    files = list_shards(shards / "shards")
    assert len(files) == 7
    sizes = sorted({tuple(read_shard(f).x.shape) for f in files})
    assert sizes == [(2, 32, 32), (2, 40, 40)]  # each scan's own matrix, no forced --size
    s = read_shard(files[-1])
    assert s.x.dtype == torch.complex64
    q = torch.quantile(s.x.abs().flatten(1), 0.99, dim=1)
    assert torch.allclose(q, torch.ones_like(q), atol=1e-3)
    m = s.metadata[0]
    assert m.anatomy == "brain" and m.slice_index == s.slices[0] and m.slice_plane == "axial"
    assert m.pixel_spacing_mm and m.pixel_spacing_mm > 0 and m.slice_thickness_mm > 0
    assert s.prompts[0].startswith("brain, Slice ")
    totals = json.loads((shards / "shards" / "manifest.json").read_text())["totals"]
    assert totals["slices"] == 14 and totals["sizes"] == {"32x32": 12, "40x40": 2}
    assert totals["planes"] == {"axial": 14}
    r = run(["-m", "training.prepare", "--summary", str(shards / "shards")])
    assert r.returncode == 0 and "14 slices in 7 shards" in r.stdout
    assert "32x32: 12 | 40x40: 2" in r.stdout and "axial: 14" in r.stdout
    assert "pixel spacing (mm)" in r.stdout
    r = run(["-m", "training.prepare", str(shards / "raw"), str(shards / "shards"), "--size", "32", "32"])
    assert "0 to do" in r.stderr


def test_fit_resumes_and_its_checkpoint_loads_in_the_reconstructor(shards):
    out = shards / "fit1"
    common = ["-m", "training.fit", "--config", str(shards / "fit.yaml"), "--data",
              str(shards / "shards"), "--out", str(out), "--patch-size", "32", "32"]
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


def test_loss_falls_in_a_short_cpu_run(shards):
    from training.config import load_config
    from training.data import collate
    from training.distributed import Dist
    from training.fit import Trainer

    cfg = load_config(shards / "fit.yaml", {"data": str(shards / "shards"), "patch_size": [32, 32],
                                            "out": str(shards / "fit2"), "steps": 40})
    t = Trainer(cfg, Dist())
    g = torch.Generator().manual_seed(0)
    keys = [(s, i) for s, e in enumerate(t.data.entries) for i in range(e.num_slices)]
    losses = []
    for step in range(40):
        pick = torch.randint(0, len(keys), (4,), generator=g).tolist()
        losses.append(t.train_step(collate([t.data[keys[k] + (step,)] for k in pick])))
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.7 * first, (first, last)


def test_finetune_with_lora_ood_mix_and_noise_window_saves_a_plain_checkpoint(shards):
    base = shards / "base"
    r = run(["-m", "training.fit", "--config", str(shards / "fit.yaml"), "--data",
             str(shards / "shards"), "--out", str(base), "--steps", "2", "--patch-size", "32", "32"])
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


def test_finetune_from_the_published_folder_keeps_its_convention(shards,
                                                                 small_published_checkpoint):
    """``training.finetune --init-from MRI_checkpoint``: the UNet the data calls for (brain ->
    fastmri, trained at 32 here like the shards), trained in its own convention and saved as a
    contextmri checkpoint that keeps it (orientation, crop, published prompts, paper preset)."""
    from contextmri_core.io.models.official import load_any

    out = shards / "ft_published"
    r = run(["-m", "training.finetune", "--init-from", str(small_published_checkpoint),
             "--data", str(shards / "shards"), "--out", str(out), "--steps", "2",
             "--batch-size", "2"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "crops: prepare the shards" not in r.stderr  # 32x32 shards for a 32x32 UNet
    tuned, before = load_prior(out / "model"), load_any(small_published_checkpoint)
    assert tuned.info["unet"] == "fastmri" and tuned.info["fit_config"]["init_unet"] is None
    assert tuned.normalisation == before.normalisation  # published, 32x32
    assert tuned.encoder.clip_config.prompt_style == "published"
    changed = [k for k, v in tuned.unet.state_dict().items()
               if not torch.equal(v, before.unet.state_dict()[k])]
    assert changed and set(tuned.unet.state_dict()) == set(before.unet.state_dict())
    r = run(["-m", "training.finetune", "--init-from", str(small_published_checkpoint),
             "--unet", "skm-tea", "--data", str(shards / "shards"), "--out",
             str(shards / "ft_skm"), "--steps", "1", "--batch-size", "2"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "was trained on (48, 48) crops" in r.stderr  # 32x32 shards for a 48x48 UNet: said
    assert load_prior(shards / "ft_skm" / "model").info["unet"] == "skm-tea"
