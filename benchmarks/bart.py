"""BART (Debian ``bart`` 0.8) as a reference reconstructor for the benchmarks.

BART's axis order is ``[x/RO, y/E1, z, coils, ...]``; ours is ``(coils, ky=E1, kx=RO)``
(DESIGN §3). :func:`to_bart` and :func:`from_bart` are the only places that transpose, and
:func:`zero_filled_check` verifies them: BART's ``fft -i -u`` + ``rss`` image of our k-space
must match our zero-filled RSS image (verified: correlation 1.000, scale 1.000; the transposed
image gives ~0.64). Files go through :mod:`contextmri_core.io.raw.cfl` in a temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from contextmri_core.io.raw.cfl import read_cfl, write_cfl
from contextmri_core.physics.calibration import calibration_box
from contextmri_core.physics.coils import kernel_shape
from contextmri_core.recon.base import ReconResult, check_inputs
from contextmri_core.recon.classical import ZeroFilledRecon


class BartError(RuntimeError):
    """A BART command failed: names the command and BART's last output lines."""


def bart_available() -> bool:
    """Whether the ``bart`` executable is on ``PATH``."""
    return shutil.which("bart") is not None


def run_bart(args: Sequence[str], workdir: Path) -> str:
    """Run ``bart ARGS`` in ``workdir``; returns stdout, raises :class:`BartError` on failure."""
    if not bart_available():
        raise BartError("'bart' not found on PATH: install the Debian package 'bart'")
    proc = subprocess.run(["bart", *args], cwd=workdir, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise BartError(f"'bart {' '.join(args)}' failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def to_bart(kspace: np.ndarray) -> np.ndarray:
    """One slice ``(C, ky, kx)`` -> BART ``(kx, ky, 1, C)``."""
    return np.transpose(np.asarray(kspace), (2, 1, 0))[:, :, None, :]


def from_bart(image: np.ndarray) -> np.ndarray:
    """BART image ``(x, y[, 1...])`` (trailing singletons) -> ours ``(ny, nx)``."""
    image = np.asarray(image)
    return np.ascontiguousarray(image.reshape(image.shape[:2]).T)


def ecalib_kernel(mask: np.ndarray, width: int = 6) -> int:
    """BART ``ecalib -k`` for ``mask`` ``(ky, kx)``: our ESPIRiT's rule (``kernel_shape``:
    the kernel shrinks along a narrow ACS block), the smaller side since ``-k`` is one size.
    With 8 ACS lines BART's default 6 leaves holes in the maps (eigenvalues under the 0.95
    crop): pics -l1 15.6 dB vs 22.3 dB with -k 4 (simulated T2, uniform1d:8:0.0625)."""
    rows, cols = calibration_box(np.asarray(mask))
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    return int(min(kernel_shape(shape, width)))


def pics_slice(kspace: np.ndarray, flags: Sequence[str], workdir: Path,
               kernel: Optional[int] = None) -> np.ndarray:
    """``bart ecalib -m1`` maps from the (undersampled) k-space itself, then ``bart pics
    FLAGS`` with them: ``(C, ky, kx)`` -> ``(ny, nx)`` complex64.

    ``ecalib`` finds the fully sampled centre itself; its size limit (``-r``, default 24) is
    raised to the whole matrix so 1D masks calibrate on ACS rows x the full readout (DESIGN §5;
    as ``tests/core/test_espirit_bart.py``): with 8 ACS lines the default 24x8 block gives maps
    that cost pics -l1 4 dB (17.4 vs 21.4 dB, simulated T2, uniform1d:8:0.0625); unchanged
    with poisson2d masks and within 0.15 dB at uniform1d:4.
    """
    ksp = to_bart(kspace)
    write_cfl(workdir / "ksp", ksp)
    size = ["-k", str(kernel)] if kernel else []
    run_bart(["ecalib", "-m1", *size, "-r", f"{ksp.shape[0]}:{ksp.shape[1]}:1", "ksp", "maps"],
             workdir)
    run_bart(["pics", *flags, "ksp", "maps", "img"], workdir)
    return from_bart(read_cfl(workdir / "img")).astype(np.complex64)


@dataclass(frozen=True)
class BartPicsRecon:
    """BART ``pics`` with BART's own ``ecalib -m1`` maps (the ``maps`` argument is ignored so
    BART's calibration is compared too); same signature as every reconstructor."""

    flags: tuple = ("-l1", "-r", "0.01")
    name: str = "bart_pics_l1"

    def __call__(self, kspace, mask, maps, metadata=None) -> ReconResult:
        check_inputs(kspace, mask, maps)
        m = mask.to(kspace.device, torch.float32).reshape(-1, 1, *mask.shape[-2:])
        y = (kspace * m).cpu().numpy()
        masks = np.broadcast_to(m[:, 0].cpu().numpy(), (y.shape[0], *y.shape[-2:]))
        with tempfile.TemporaryDirectory(prefix="bart_") as tmp:
            out = [pics_slice(y[b], self.flags, Path(tmp), ecalib_kernel(masks[b]))
                   for b in range(y.shape[0])]
        image = torch.from_numpy(np.stack(out)).to(kspace.device)
        return ReconResult(image=image, method=self.name, info={"flags": list(self.flags)})


#: DESIGN §8: ``pics -l1 -r 0.01`` and ``pics -l2`` (BART's default lambda is 0 there, i.e.
#: CG-SENSE stopped after BART's default 30 iterations; verified with ``-r 0``).
BART_METHODS: Dict[str, BartPicsRecon] = {
    "bart_pics_l1": BartPicsRecon(("-l1", "-r", "0.01"), "bart_pics_l1"),
    "bart_pics_l2": BartPicsRecon(("-l2",), "bart_pics_l2"),
}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.abs(a).ravel(), np.abs(b).ravel())[0, 1])


def zero_filled_check(kspace: torch.Tensor, mask: torch.Tensor) -> Dict[str, float]:
    """Compare BART's zero-filled RSS (``fft -i -u 3`` + ``rss 8``) of the first slice with
    ours: ``corr`` (magnitudes), ``corr_transposed`` (what a swapped x/y would give) and
    ``scale`` (least-squares factor BART/ours; 1 for the same unitary FFT)."""
    m = mask.to(kspace.device, torch.float32).reshape(-1, 1, *mask.shape[-2:])
    y = (kspace[:1] * m[:1]).cpu()
    ours = ZeroFilledRecon()(y, m[:1, 0], torch.ones_like(y)).image[0].abs().numpy()
    with tempfile.TemporaryDirectory(prefix="bart_") as tmp:
        write_cfl(Path(tmp) / "ksp", to_bart(y[0].numpy()))
        run_bart(["fft", "-i", "-u", "3", "ksp", "coils"], Path(tmp))
        run_bart(["rss", "8", "coils", "rss"], Path(tmp))
        theirs = np.abs(from_bart(read_cfl(Path(tmp) / "rss")))
    scale = float(np.sum(theirs * ours) / max(float(np.sum(ours * ours)), 1e-30))
    return {"corr": _corr(theirs, ours), "corr_transposed": _corr(theirs.T, ours), "scale": scale}


def describe() -> List[str]:
    """One line per BART method: its name and the exact commands it runs."""
    return [f"{name}: bart ecalib -m1 -k K -r NX:NY:1 ksp maps (K: our ESPIRiT kernel rule, "
            f"4 for 10 ACS lines, 3 for 8); "
            f"bart pics {' '.join(m.flags)} ksp maps img" for name, m in BART_METHODS.items()]
