"""Training tests run tiny models in-process on one intra-op thread, as the command-line
tests do (OMP_NUM_THREADS=1): on 2 shared cores two spinning threads make them many times
slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
