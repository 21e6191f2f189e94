"""torchrun plumbing: a process group whenever torchrun launched us, one process included."""

import socket

import torch.distributed as dist

from training import distributed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_plain_run_has_no_process_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    d = distributed.setup()
    assert (d.world_size, d.backend, d.enabled, d.is_main) == (1, None, False, True)


def test_torchrun_with_one_process_starts_a_process_group(monkeypatch):
    """``torchrun --nproc_per_node 1`` (as the GPU check runs training): the group is up, so
    DDP and its all-reduce run as with several GPUs (NCCL there, gloo on a CPU)."""
    env = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "TORCHELASTIC_RUN_ID": "test",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    d = distributed.setup()
    try:
        assert d.enabled and d.backend == "gloo" and dist.is_initialized()
        assert dist.get_backend() == "gloo" and dist.get_world_size() == 1
        distributed.barrier(d)
    finally:
        distributed.teardown(d)
    assert not dist.is_initialized()
