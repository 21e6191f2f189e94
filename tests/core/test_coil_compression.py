"""SVD coil compression: analytic checks on data that lives in a K-dimensional coil subspace,
the energy rule, errors, the preparation stage (off = bit-identical) and the SENSE cost on a
simulated 32-coil scan."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.scan import SliceData
from contextmri_core.errors import ConfigError, ShapeError
from contextmri_core.physics.coil_compression import compress, compression_matrix, kept_energy
from contextmri_core.physics.fft import fft2c
from contextmri_core.physics.masks import to_2d, uniform1d
from contextmri_core.physics.mvue import mvue
from contextmri_core.recon.classical import SenseRecon
from contextmri_core.recon.prepare import PrepConfig, prepare_slices
from contextmri_core.recon.stream import StreamSettings


def _crandn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.complex(torch.randn(shape, generator=g, dtype=torch.float64),
                         torch.randn(shape, generator=g, dtype=torch.float64))


def _low_rank_coils(coils: int, rank: int, n: int, seed: int = 0):
    """Maps ``(C, n, n)`` = random ``(C, K)`` mixing of K smooth blob maps, and an object
    ``(n, n)``: every pixel's coil vector lies in the K-dimensional span of the mixing."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n, dtype=torch.float64),
                            torch.linspace(-1, 1, n, dtype=torch.float64), indexing="ij")
    angles = torch.arange(rank, dtype=torch.float64) * 2 * np.pi / rank
    blobs = [torch.exp(-(yy - 0.6 * torch.sin(a)) ** 2 - (xx - 0.6 * torch.cos(a)) ** 2)
             * torch.exp(1j * (yy * k + xx)) for k, a in enumerate(angles)]
    basis = torch.stack(blobs)
    maps = torch.einsum("ck,kyx->cyx", _crandn(g, coils, rank), basis)
    maps = maps / maps.abs().pow(2).sum(0).sqrt()
    disk = ((yy ** 2 + xx ** 2) < 0.7).to(torch.float64)
    obj = disk * (1 + 0.5 * torch.cos(6 * yy) * torch.sin(4 * xx)) * torch.exp(0.5j * xx)
    return maps, obj


def _slice(coils: int, rank: int, n: int = 32, seed: int = 0) -> SliceData:
    """A noiseless x2 slice (12 ACS lines) whose coils span a rank-``rank`` subspace."""
    maps, obj = _low_rank_coils(coils, rank, n, seed)
    mask = to_2d(uniform1d(n, 2, seed=seed, center_fraction=12 / n), n)
    kspace = (fft2c(maps * obj).numpy() * mask).astype(np.complex64)
    return SliceData(kspace=kspace, mask=mask, metadata=ScanMetadata())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def test_matrix_rows_are_orthonormal_and_never_more_than_the_coils():
    calib = _crandn(torch.Generator().manual_seed(1), 6, 10, 12).to(torch.complex64)
    m = compression_matrix(calib, num_virtual=4)
    assert m.shape == (4, 6) and m.dtype == torch.complex64
    torch.testing.assert_close(m @ m.mH, torch.eye(4, dtype=m.dtype), atol=1e-5, rtol=0)
    assert compression_matrix(calib, num_virtual=10).shape == (6, 6)
    assert compression_matrix(calib, num_virtual=2, energy=0.1).shape == (2, 6)  # V wins
    assert compress(calib, m, coil_dim=0).shape == (4, 10, 12)


def test_data_in_a_k_dimensional_coil_subspace_compresses_to_k_coils():
    maps, obj = _low_rank_coils(coils=12, rank=3, n=32)
    kspace = fft2c(maps * obj).unsqueeze(0)  # (1, C, ky, kx)
    calib = kspace[0, :, 10:22, :]
    m = compression_matrix(calib, num_virtual=3)
    assert kept_energy(calib, m) >= 1 - 1e-6
    assert compression_matrix(calib, energy=1 - 1e-6).shape == (3, 12)
    assert kept_energy(calib, compression_matrix(calib, num_virtual=2)) < 1 - 1e-3
    reference = mvue(kspace, maps)
    compressed = mvue(compress(kspace, m), compress(maps, m, coil_dim=0))
    assert _rel(compressed, reference) < 1e-6


def test_energy_picks_the_smallest_number_of_virtual_coils_reaching_it():
    g = torch.Generator().manual_seed(2)
    u, _ = torch.linalg.qr(_crandn(g, 6, 6))
    vh = torch.linalg.qr(_crandn(g, 40, 6))[0].mT.conj()  # (6, 40), orthonormal rows
    energies = torch.tensor([60.0, 25.0, 10.0, 3.5, 1.0, 0.5], dtype=torch.float64)
    calib = (u * energies.sqrt()) @ vh  # cumulative: .60 .85 .95 .985 .995 1
    for energy, v in ((0.99, 5), (0.9, 3), (0.5, 1), (0.999, 6), (1.0, 6)):
        m = compression_matrix(calib, energy=energy)
        assert m.shape == (v, 6), energy
        assert kept_energy(calib, m) == pytest.approx(float(energies[:v].sum() / 100), abs=1e-9)
    # the rows are the leading left singular vectors (up to a phase each)
    overlap = (compression_matrix(calib, num_virtual=3) @ u).abs()
    torch.testing.assert_close(overlap[:, :3], torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0)


def test_bad_shapes_and_arguments_raise_named_errors():
    calib = torch.ones(4, 8, dtype=torch.complex64)
    with pytest.raises(ShapeError, match="calibration"):
        compression_matrix(torch.ones(4, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="num_virtual"):
        compression_matrix(calib, num_virtual=0)
    with pytest.raises(ConfigError, match="energy"):
        compression_matrix(calib, energy=1.5)
    with pytest.raises(ShapeError, match="expects 4"):
        compress(torch.ones(1, 5, 8, 8, dtype=torch.complex64), compression_matrix(calib, 2))
    with pytest.raises(ShapeError, match="coil_dim"):
        compress(calib, compression_matrix(calib, 2), coil_dim=3)
    with pytest.raises(ConfigError, match="virtual_coils"):
        PrepConfig(virtual_coils=0)


def test_prepare_without_compression_is_bit_identical():
    slices = [_slice(6, 6, seed=s) for s in (0, 1)]
    noise = _crandn(torch.Generator().manual_seed(3), 6, 256).to(torch.complex64).numpy()
    plain = prepare_slices(slices, noise)
    for v in (None, 6, 9):
        same = prepare_slices(slices, noise, PrepConfig(virtual_coils=v))
        assert torch.equal(same.kspace, plain.kspace) and torch.equal(same.maps, plain.maps)


def test_prepare_compresses_kspace_and_maps_into_one_virtual_basis():
    slices = [_slice(12, 3, seed=s) for s in (0, 1)]
    full = prepare_slices(slices, None)
    small = prepare_slices(slices, None, PrepConfig(virtual_coils=3))
    assert small.kspace.shape == (2, 3, 32, 32) and small.maps.shape == (2, 3, 32, 32)
    ref_mvue = mvue(full.kspace * full.mask.unsqueeze(1), full.maps).abs()
    assert _rel(mvue(small.kspace * small.mask.unsqueeze(1), small.maps).abs(), ref_mvue) < 1e-4
    ref_sense = SenseRecon()(full.kspace, full.mask, full.maps).image.abs()
    assert _rel(SenseRecon()(small.kspace, small.mask, small.maps).image.abs(), ref_sense) < 1e-4


def test_stream_settings_take_virtual_coils_from_properties():
    assert StreamSettings.from_properties({"virtual_coils": "8"}).virtual_coils == 8
    assert StreamSettings.from_properties({"virtual-coils": "none"}).virtual_coils is None
    assert StreamSettings().virtual_coils is None
    with pytest.raises(ConfigError, match="virtual_coils"):
        StreamSettings.from_properties({"virtual_coils": "many"})
    with pytest.raises(ConfigError, match="virtual_coils"):
        StreamSettings(virtual_coils=0)


def test_stream_prepares_with_the_settings_virtual_coils(tmp_path):
    from contextmri_core.io.raw.ismrmrd_reader import record_from_acquisition
    from contextmri_core.recon.stream import assemble, batches, reconstruct_groups
    from tests import mrd_helpers as h

    header, acqs = h.read_stream(h.synthetic_scan(tmp_path / "s.h5", slices=1))
    settings = StreamSettings(device="cpu", virtual_coils=3, fallback="none")
    slices, noise, _ = assemble([record_from_acquisition(a) for a in acqs], header, settings)
    (res,) = reconstruct_groups(batches(slices, 1), noise, SenseRecon, settings)
    assert res.batch.kspace.shape[1] == 3 and res.batch.maps.shape[1] == 3


@pytest.fixture(scope="module")
def scan32(tmp_path_factory):
    """A simulated 64x64, 32-coil AXT2 slice read from ISMRMRD files: x2 (cf 0.25: 16 ACS +
    16 outer lines; x4 at cf 0.25 would acquire the 16 ACS lines only, leaving SENSE nothing
    to unfold) and the fully sampled acquisition of the same seed (same k-space)."""
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.io.raw.reader import read_scan
    from contextmri_core.synth.scan import SimConfig, simulate

    out = tmp_path_factory.mktemp("cc")
    cfg = SimConfig(matrix=64, num_slices=1, num_coils=32, acceleration=2, center_fraction=0.25)
    under = simulate(0, "AXT2", cfg)
    full = simulate(0, "AXT2", dataclasses.replace(cfg, acceleration=1))
    assert np.array_equal(under.kspace, full.kspace)
    return (read_scan(write_ismrmrd(out / "x2.h5", under)),
            read_scan(write_ismrmrd(out / "full.h5", full)))


def test_sense_with_10_virtual_coils_loses_under_half_a_db_on_a_32_coil_scan(scan32):
    from contextmri_core.recon.evaluate import score_slices
    from contextmri_core.recon.prepare import prepare_scan

    under, full = scan32
    assert under.num_coils == 32 and under.slices[0].acceleration == 2
    ref = prepare_scan(full)
    reference = mvue(ref.kspace, ref.maps)
    psnr = {}
    for v in (None, 10):
        b = prepare_scan(under, PrepConfig(virtual_coils=v))
        assert b.kspace.shape[1] == (v or 32)
        psnr[v] = score_slices(SenseRecon()(b.kspace, b.mask, b.maps).image, reference)["psnr"]
    assert psnr[None] > 30 and psnr[None] - psnr[10] < 0.5, psnr  # ~34.1 and ~0.06 dB
