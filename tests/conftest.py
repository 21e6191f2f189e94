"""Shared fixtures: files made by real tools (Debian ismrmrd-tools), never downloaded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a CUDA GPU: skipped (with the command that runs them) when
    none is there. CI deselects them anyway with ``-m "not cuda"``."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: bash benchmarks/gpu_check.sh runs it there")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def run_tool(*args: str, cwd: Path) -> None:
    """Run a Debian tool; fail (not skip) when it is missing: .ci/install installs it."""
    assert shutil.which(args[0]), f"{args[0]} missing: run .ci/install (Debian ismrmrd-tools)"
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def shepp_logan(tmp_path_factory) -> Path:
    """Debian's ``ismrmrd_generate_cartesian_shepp_logan -C -a 2 -w 32``: 8 coils, 256x256
    (512 with 2x oversampling), R=2, 32 ACS lines, one noise scan, ``/dataset/phantom``."""
    out = tmp_path_factory.mktemp("sl")
    run_tool("ismrmrd_generate_cartesian_shepp_logan", "-C", "-a", "2", "-w", "32",
             "-o", str(out / "sl.h5"), cwd=out)
    return out / "sl.h5"


@pytest.fixture(scope="session")
def published_checkpoint(tmp_path_factory) -> Path:
    """The published release's layout with tiny random UNets at the real sample sizes
    (``fastmri`` 320, ``skm-tea`` 512): ``MRI_checkpoint/``."""
    from tests.prior.published_layout import write_published

    root = tmp_path_factory.mktemp("published") / "MRI_checkpoint"
    write_published(root)
    return root


@pytest.fixture(scope="session")
def small_published_checkpoint(tmp_path_factory) -> Path:
    """The same layout with sample sizes 32 (``fastmri``) and 48 (``skm-tea``): entry-point
    tests on 32x32 scans that need no 320x320 forward."""
    from tests.prior.published_layout import write_published

    root = tmp_path_factory.mktemp("published_small") / "MRI_checkpoint"
    write_published(root, {"fastmri": 32, "skm-tea": 48})
    return root
