"""Pure acquisition assembly: flag predicates, line/readout placement, ACS, noise, averaging."""

from __future__ import annotations

import numpy as np
import pytest

from contextmri_core.data import assembly as asm
from contextmri_core.data.assembly import AcqRecord, assemble_slices, detect_acs_rows
from contextmri_core.data.encoding import EncodingInfo, Limit, parse_encoding
from contextmri_core.data.metadata import ScanMetadata

C = 3


def bit(flag: int) -> int:
    return 1 << (flag - 1)


def rec(e1: int, value: complex = 1.0, *, flags: int = 0, n: int = 8, slice_: int = 0,
        center: int = 0, pre: int = 0, post: int = 0, rep: int = 0, avg: int = 0,
        data: np.ndarray = None) -> AcqRecord:
    if data is None:
        data = np.full((C, n), value, dtype=np.complex64) * (1 + np.arange(C))[:, None]
    return AcqRecord(flags=flags, e1=e1, e2=0, slice=slice_, center_sample=center,
                     discard_pre=pre, discard_post=post, data=data.astype(np.complex64),
                     repetition=rep, average=avg)


def enc(e1: int = 8, ro: int = 8, recon_x: int = None, center: int = None) -> EncodingInfo:
    limits = () if center is None else (("kspace_encoding_step_1", Limit(0, e1 - 1, center)),)
    return EncodingInfo(trajectory="cartesian", encoded_matrix=(ro, e1, 1),
                        recon_matrix=(recon_x or ro, e1, 1), limits=limits)


def ref_fft_c(x):
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=-1), norm="ortho"), axes=-1)


def ref_ifft_c(x):
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(x, axes=-1), norm="ortho"), axes=-1)


def test_flag_bits_follow_ismrmrd_numbering():
    assert asm.is_noise(bit(19)) and not asm.is_noise(bit(20)) and not asm.is_noise(1 << 19)
    assert asm.is_parallel_calibration(bit(20)) and not asm.is_imaging(bit(20))
    assert asm.is_calibration_and_imaging(bit(21)) and asm.is_imaging(bit(21))
    assert asm.is_calibration(bit(20)) and asm.is_calibration(bit(21))
    for flag in (19, 23, 24, 27):
        assert not asm.is_imaging(bit(flag)), flag
    assert asm.is_imaging(0) and asm.is_imaging(bit(7) | bit(8))  # first/last in slice
    assert asm.flag_set(1 << 63, 64)
    assert asm.is_navigation(bit(23)) and asm.is_phasecorr(bit(24)) and asm.is_dummyscan(bit(27))


def test_separate_and_embedded_acs_and_noise():
    records = [rec(0, flags=bit(19), n=5, value=9), rec(0, flags=bit(19), n=3, value=7)]
    records += [rec(e, 10 + e) for e in (0, 2, 6)]
    records += [rec(e, 20 + e, flags=bit(21)) for e in (4,)]  # embedded
    records += [rec(e, 30 + e, flags=bit(20)) for e in (3, 5)]  # separate
    records += [rec(1, 99, flags=bit(23)), rec(7, 99, flags=bit(24)), rec(7, 99, flags=bit(27))]
    (sl,), noise = assemble_slices(records, enc(center=4), ScanMetadata())
    assert noise.shape == (C, 8) and noise.dtype == np.complex64
    np.testing.assert_allclose(noise[0], [9] * 5 + [7] * 3)
    rows = sl.mask.any(axis=1)
    assert np.flatnonzero(rows).tolist() == [0, 2, 4, 6]
    assert sl.kspace.shape == (C, 8, 8) and sl.kspace.dtype == np.complex64
    assert sl.mask.dtype == np.float32
    np.testing.assert_allclose(sl.kspace[:, 4, 0], [24, 48, 72])
    assert not sl.kspace[:, [1, 3, 5, 7]].any()  # navigator etc. skipped, separate ACS not imaging
    assert np.flatnonzero(sl.acs_rows).tolist() == [3, 4, 5]
    np.testing.assert_allclose(sl.acs[0, [3, 4, 5], 0], [33, 24, 35])
    assert not sl.acs[:, [0, 2, 6]].any()


def test_no_flags_gives_no_acs_and_no_noise():
    (sl,), noise = assemble_slices([rec(e) for e in range(8)], enc(), ScanMetadata())
    assert noise is None and sl.acs is None and sl.acs_rows is None
    assert asm.calibration_rows(sl).all()


def test_partial_fourier_rows_follow_the_encoding_centre():
    # 6 of 8 rows acquired, e1 = 0..5 with the k-space centre at e1 = 2 -> rows 2..7.
    records = [rec(e, 100 + e) for e in range(6)]
    (sl,), _ = assemble_slices(records, enc(e1=8, center=2), ScanMetadata())
    assert np.flatnonzero(sl.mask.any(1)).tolist() == [2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(sl.kspace[0, 2:, 0].real, 100 + np.arange(6))
    assert not sl.kspace[:, :2].any() and not sl.mask[:2].any()


def test_asymmetric_echo_and_discards_place_samples_by_center_sample():
    data = np.tile(np.arange(1, 8, dtype=np.complex64), (C, 1))  # 7 raw samples 1..7
    # discard 1 sample before and 1 after; k-space centre at raw sample 3 -> column 3-3+4=4
    records = [rec(4, data=data, center=3, pre=1, post=1)]
    (sl,), _ = assemble_slices(records, enc(ro=8, center=4), ScanMetadata())
    np.testing.assert_allclose(sl.kspace[0, 4].real, [0, 0, 2, 3, 4, 5, 6, 0])
    np.testing.assert_array_equal(sl.mask[4], [0, 0, 1, 1, 1, 1, 1, 0])


def test_reverse_lines_are_flipped():
    data = np.tile(np.arange(1, 9, dtype=np.complex64), (C, 1))
    (sl,), _ = assemble_slices([rec(4, data=data, center=4, flags=bit(22))], enc(center=4),
                               ScanMetadata())
    np.testing.assert_allclose(sl.kspace[0, 4].real, np.arange(8, 0, -1))


def test_readout_oversampling_removal_matches_reference_crop():
    rng = np.random.default_rng(0)
    line = (rng.standard_normal((C, 16)) + 1j * rng.standard_normal((C, 16))).astype(np.complex64)
    records = [rec(e, data=line * (e + 1), center=8) for e in range(4)]
    (sl,), _ = assemble_slices(records, enc(e1=4, ro=16, recon_x=8, center=2), ScanMetadata())
    expected = ref_fft_c(ref_ifft_c(line)[:, 4:12])
    assert sl.kspace.shape == (C, 4, 8) and sl.mask.shape == (4, 8)
    np.testing.assert_allclose(sl.kspace[:, 1], 2 * expected, rtol=1e-5, atol=1e-5)
    assert sl.mask.all()


def test_averages_are_averaged_and_first_repetition_is_kept():
    records = [rec(4, 2.0, avg=0), rec(4, 4.0, avg=1), rec(4, 50.0, rep=1), rec(2, 1.0, rep=1)]
    (sl,), _ = assemble_slices(records, enc(center=4), ScanMetadata())
    np.testing.assert_allclose(sl.kspace[0, 4].real, 3.0)
    assert np.flatnonzero(sl.mask.any(1)).tolist() == [4]
    (sl1,), _ = assemble_slices(records, enc(center=4), ScanMetadata(), repetition=1)
    assert np.flatnonzero(sl1.mask.any(1)).tolist() == [2, 4]
    np.testing.assert_allclose(sl1.kspace[0, 4].real, 50.0)


def test_slices_are_grouped_in_order_with_their_metadata():
    records = [rec(e, 10 * (s + 1) + e, slice_=s) for s in (1, 0) for e in range(8)]
    slices, _ = assemble_slices(records, enc(center=4), ScanMetadata(anatomy="knee"))
    assert [s.metadata.slice_index for s in slices] == [0, 1]
    assert all(s.metadata.anatomy == "knee" for s in slices)
    np.testing.assert_allclose(slices[1].kspace[0, :, 0].real, 20 + np.arange(8))


def test_errors_for_nothing_to_image_and_lines_off_the_grid():
    with pytest.raises(ValueError, match="no imaging"):
        assemble_slices([rec(0, flags=bit(19)), rec(3, flags=bit(20))], enc(), ScanMetadata())
    with pytest.raises(ValueError, match="outside"):
        assemble_slices([rec(20)], enc(center=4), ScanMetadata())


@pytest.mark.parametrize("rows, expected", [
    ("0010111110100", "0000111110000"),  # centre block of 5, isolated lines outside
    ("1111111111111", "1111111111111"),  # fully sampled: one block
    ("1010101010101", "0000001000000"),  # R=2, no ACS: a single line
    ("1111000000000", "0000000000000"),  # centre not acquired
    ("0001111100", "0001111100"),  # even length: centre row n//2 = 5
    ("0111100000", "0111100000"),  # centre n//2 missing, n//2 - 1 present
])
def test_detect_acs_rows(rows, expected):
    got = detect_acs_rows(np.array([c == "1" for c in rows]))
    assert "".join("1" if v else "0" for v in got) == expected


def test_parse_encoding_handles_missing_pieces():
    info = parse_encoding("<ismrmrdHeader><encoding><trajectory>radial</trajectory>"
                          "</encoding></ismrmrdHeader>")
    assert info.trajectory == "radial" and not info.is_cartesian
    assert info.encoded_matrix is None and info.limits == () and info.acceleration_e1 == 1
    assert info.readout_oversampling == 1.0 and info.num_coils is None
    assert parse_encoding("<ismrmrdHeader/>") == EncodingInfo()


def test_larger_encoded_matrix_with_equal_fov_is_not_oversampling():
    base = dict(trajectory="cartesian", encoded_matrix=(16, 4, 1), recon_matrix=(8, 4, 1))
    info = EncodingInfo(encoded_fov_mm=(200.0, 200.0, 5.0), recon_fov_mm=(200.0, 200.0, 5.0),
                        **base)
    assert not info.readout_oversampled and info.readout_oversampling == 1.0
    (sl,), _ = assemble_slices([rec(e, n=16, center=8) for e in range(4)], info, ScanMetadata())
    assert sl.kspace.shape == (C, 4, 16)
    over = EncodingInfo(encoded_fov_mm=(400.0, 200.0, 5.0), recon_fov_mm=(200.0, 200.0, 5.0),
                        **base)
    assert over.readout_oversampled and over.readout_oversampling == 2.0
    assert EncodingInfo(**base).readout_oversampling == 2.0  # FOVs unknown: trust the matrix


# ----------------------------------------------------------------------------- issue 13 items 3, 8
def test_a_header_grid_far_larger_than_the_data_is_refused_before_allocating():
    """encodedSpace y = 100000 with 4 lines received: refused by the data/limit checks, fast."""
    import time

    lines = [rec(e) for e in range(4)]
    t0 = time.perf_counter()
    with pytest.raises(asm.ScanTooLarge, match="encodedSpace y=100000"):
        assemble_slices(lines, enc(e1=100000, ro=8), ScanMetadata())
    with pytest.raises(asm.ScanTooLarge, match="encodedSpace x=100000"):
        assemble_slices(lines, enc(e1=8, ro=100000), ScanMetadata())
    assert time.perf_counter() - t0 < 1.0
    assert issubclass(asm.ScanTooLarge, ValueError)  # readers turn it into one error line


def test_grid_limits_are_configurable():
    lines = [rec(e, n=8) for e in range(8)]
    assemble_slices(lines, enc(e1=8, ro=8), ScanMetadata())  # within the defaults
    with pytest.raises(asm.ScanTooLarge, match="max_matrix"):
        assemble_slices(lines, enc(e1=8, ro=8), ScanMetadata(), limits=asm.GridLimits(max_matrix=4))
    with pytest.raises(asm.ScanTooLarge, match="bytes"):
        assemble_slices(lines, enc(e1=8, ro=8), ScanMetadata(),
                        limits=asm.GridLimits(max_grid_bytes=1000))


def test_non_finite_samples_are_counted_zeroed_and_masked(caplog):
    data = np.ones((C, 8), np.complex64)
    data[1, 3] = np.nan
    data[0, 5] = complex(np.inf, 0)
    lines = [rec(e) for e in range(8) if e != 2] + [rec(2, data=data)]
    (sl,), _ = assemble_slices(lines, enc(), ScanMetadata())
    assert np.isfinite(sl.kspace).all()
    assert sl.nonfinite_samples == 2
    assert sl.mask[2, 3] == 0 and sl.mask[2, 5] == 0 and sl.mask[2, 4] == 1
    assert np.all(sl.kspace[:, 2, 3] == 0) and np.all(sl.kspace[:, 2, 5] == 0)
    assert "2 non-finite k-space samples" in caplog.text


def test_non_finite_noise_acquisitions_are_dropped():
    noise = np.ones((C, 5), np.complex64)
    noise[0, 0] = np.nan
    good = np.ones((C, 4), np.complex64)
    lines = [rec(0, flags=bit(19), data=noise), rec(0, flags=bit(19), data=good)]
    _, out = assemble_slices(lines + [rec(e) for e in range(8)], enc(), ScanMetadata())
    assert out.shape == (C, 4) and np.isfinite(out).all()


def test_a_calibration_line_with_non_finite_samples_does_not_calibrate():
    data = np.ones((C, 8), np.complex64)
    data[2, 1] = np.nan
    lines = [rec(e, flags=bit(21)) for e in (3, 5)] + [rec(4, flags=bit(21), data=data)]
    lines += [rec(e) for e in (0, 6)]
    (sl,), _ = assemble_slices(lines, enc(), ScanMetadata())
    assert list(np.flatnonzero(sl.acs_rows)) == [3, 5] and sl.nonfinite_samples == 1
    assert np.isfinite(sl.acs).all() and sl.mask[4, 1] == 0
