"""Two "nodes" (``torchrun --nnodes 2 --nproc_per_node 1``, c10d rendezvous on 127.0.0.1,
gloo) train on disjoint slices that cover each epoch, only rank 0 writes, and the loss
trajectory equals one process that trains on the same global batches."""

import csv
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from training.config import load_config
from training.data import collate
from training.distributed import Dist
from training.trainer import Trainer
from tests.training.shard_data import TINY, write_set

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH = 6, 2  # per rank; 12 slices / (2 ranks x 2) = 3 steps per epoch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_nodes(cfg_path: Path, data: Path, out: Path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "i14",
           "--local_addr", "127.0.0.1", "-m", "training.fit", "--config", str(cfg_path),
           "--data", str(data), "--out", str(out), "--steps", str(STEPS)]
    nodes = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = []
    for p in nodes:
        try:
            logs.append(p.communicate(timeout=120)[0])
        finally:
            p.kill()
    assert all(p.returncode == 0 for p in nodes), "\n".join(x[-3000:] for x in logs)
    return "\n".join(logs)


def test_two_nodes_split_every_epoch_and_match_one_process(tmp_path):
    data = write_set(tmp_path / "shards", [(3, 32, 32), (2, 32, 32), (4, 32, 32), (3, 32, 32)])
    cfg = {**TINY, "batch_size": BATCH, "log_batches": True, "p_field_drop": 0.2}
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(cfg))
    log = launch_two_nodes(tmp_path / "fit.yaml", data, tmp_path / "out")

    batches = {}  # (rank, step) -> ["file:slice@epoch", ...]
    for rank, step, names in re.findall(r"rank (\d) step (\d+) batch \[([^\]]*)\]", log):
        batches[int(rank), int(step)] = re.findall(r"'([^']+)'", names)
    assert sorted(batches) == [(r, s) for r in (0, 1) for s in range(1, STEPS + 1)]
    all_slices = {f"scan{k:03d}.safetensors:{i}" for k, n in enumerate([3, 2, 4, 3]) for i in range(n)}
    for epoch in (0, 1):
        per_rank = [[n.split("@")[0] for (r, _), b in batches.items() if r == rank for n in b
                     if n.endswith(f"@{epoch}")] for rank in (0, 1)]
        assert not set(per_rank[0]) & set(per_rank[1])  # disjoint
        assert sorted(per_rank[0] + per_rank[1]) == sorted(all_slices)  # cover, none twice
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["loss.png", "metrics.csv", "model", "samples_000006.png", "train_state.pt"]
    with open(tmp_path / "out" / "metrics.csv") as f:
        ddp = [float(r["train_loss"]) for r in csv.DictReader(f) if r["train_loss"]]

    # one process, global batch 2 x BATCH: the union of the ranks' batches, step by step
    torch.set_num_threads(1)
    one = Trainer(load_config(None, {**cfg, "batch_size": 2 * BATCH, "data": str(data),
                                     "out": str(tmp_path / "one")}), Dist())
    index = {e.path.name: s for s, e in enumerate(one.data.entries)}
    losses = []
    for step in range(1, STEPS + 1):
        keys = []
        for name in batches[0, step] + batches[1, step]:
            file, rest = name.split(":")
            i, epoch = rest.split("@")
            keys.append((index[file], int(i), int(epoch)))
        losses.append(one.train_step(collate([one.data[k] for k in keys])))
    assert len(ddp) == STEPS
    assert ddp == pytest.approx(losses, rel=1e-4), (ddp, losses)
    assert losses[0] != pytest.approx(losses[-1], rel=1e-3)  # it did train
