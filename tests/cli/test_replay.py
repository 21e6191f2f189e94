"""``contextmri replay``: DICOM that passes dciodvfy with the header's parameters and geometry,
every output format, retrospective undersampling with scores, bad files contained, the
classical fallback, YAML config, privacy of the logs, and torchrun scale-out."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from contextmri_core.cli.main import main
from tests.mrd_helpers import REPO, synthetic_scan, tiny_model

pydicom = pytest.importorskip("pydicom")
DCIODVFY = shutil.which("dciodvfy")
FAST = ["--steps", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model, a fully sampled ISMRMRD scan, the same protocol as fastMRI, and an
    undersampled ISMRMRD scan (all 32x32, 4 coils, 2 slices)."""
    from contextmri_core.io.raw.fastmri_writer import write_fastmri
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    d = tmp_path_factory.mktemp("replay")
    cfg = SimConfig(matrix=32, num_slices=2, num_coils=4, lesion_probability=0.0)
    return {
        "model": tiny_model(d / "model"),
        "full": write_ismrmrd(d / "full_ax_flair.h5", simulate(5, "AXFLAIR", cfg)),
        "fastmri": write_fastmri(d / "file_brain_AXT1_fm.h5", simulate(6, "AXT1", cfg)),
        "under": synthetic_scan(d / "under_t2.h5"),
        "dir": d,
    }


def _replay(*args) -> int:
    return main(["replay", *[str(a) for a in args]])


def _dicoms(root: Path):
    return sorted(root.rglob("*.dcm"))


def _dciodvfy_errors(path: Path) -> list:
    res = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (res.stdout + res.stderr).splitlines() if "Error" in line]


@pytest.fixture(scope="module")
def replayed(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = _replay(files["full"], files["fastmri"], "--model", files["model"], "--out", out,
                   "--outputs", "dicom,png,ismrmrd,nifti", "--phase", "--ensemble", "2", *FAST)
    return code, out


def test_dicom_of_ismrmrd_and_fastmri_files_is_valid_and_carries_the_header(files, replayed):
    from contextmri_core.io.raw.reader import read_scan

    code, out = replayed
    assert code == 0
    for key in ("full", "fastmri"):
        scan = read_scan(files[key])
        stem = Path(files[key]).name[:-3]
        mags = _dicoms(out / stem / "dicom" / "01_dds_magnitude")
        assert len(mags) == len(scan.slices)
        for path in _dicoms(out / stem / "dicom"):
            if DCIODVFY:
                assert _dciodvfy_errors(path) == [], path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        ny, nx = scan.recon_matrix
        for path in mags:
            ds = pydicom.dcmread(path)
            i = int(ds.InstanceNumber) - 1
            meta, geom = scan.slices[i].metadata, scan.geometry[i]
            assert float(ds.RepetitionTime) == pytest.approx(meta.tr_ms)
            assert float(ds.EchoTime) == pytest.approx(meta.te_ms)
            assert float(ds.FlipAngle) == pytest.approx(meta.flip_angle_deg)
            if meta.ti_ms is not None:
                assert float(ds.InversionTime) == pytest.approx(meta.ti_ms)
            assert ds.ImageType[0] == "DERIVED"
            assert (int(ds.Rows), int(ds.Columns)) == (ny, nx)
            np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient],
                                       list(geom.read_dir) + list(geom.phase_dir), atol=1e-5)
            dx, dy = scan.fov_mm[0] / nx, scan.fov_mm[1] / ny
            np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [dy, dx], rtol=1e-5)
            corner = (np.asarray(geom.position) - (nx // 2) * dx * np.asarray(geom.read_dir)
                      - (ny // 2) * dy * np.asarray(geom.phase_dir))
            np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], corner,
                                       atol=1e-3)
            assert "prompt" in str(ds.ImageComments).lower()


def test_every_output_format_is_written(files, replayed):
    import ismrmrd
    import nibabel as nib

    from contextmri_core.io.raw.reader import read_scan

    _, out = replayed
    root = out / Path(files["full"]).name[:-3]
    scan = read_scan(files["full"])
    assert {p.name for p in (root / "dicom").iterdir()} == {
        "01_dds_magnitude", "02_dds_phase", "03_dds_uncertainty"}
    assert (root / "png" / "01_dds_magnitude.png").stat().st_size > 0
    nii = nib.load(str(root / "nifti" / "01_dds_magnitude.nii.gz"))
    assert nii.shape == (scan.recon_matrix[1], scan.recon_matrix[0], len(scan.slices))
    # voxel (0, 0, k) is the DICOM ImagePositionPatient of slice k (NIfTI is RAS, DICOM LPS)
    for k, path in enumerate(sorted(_dicoms(root / "dicom" / "01_dds_magnitude"),
                                    key=lambda p: int(pydicom.dcmread(p).InstanceNumber))):
        ipp = np.asarray([float(v) for v in pydicom.dcmread(path).ImagePositionPatient])
        ras = nii.affine @ np.array([0, 0, k, 1.0])
        np.testing.assert_allclose(ras[:3] * [-1, -1, 1], ipp, atol=1e-3)
    dset = ismrmrd.Dataset(str(root / "full_ax_flair_images.h5"), "dataset", create_if_needed=False)
    try:
        assert dset.number_of_images("image_01") == len(scan.slices)
        img = dset.read_image("image_01", 0)
        assert img.data.shape[-2:] == tuple(scan.recon_matrix)
    finally:
        dset.close()
    for path in root.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_undersample_scores_every_method(files, tmp_path):
    metrics = tmp_path / "m.json"
    code = _replay(files["full"], "--model", files["model"], "--out", tmp_path / "o",
                   "--undersample", "uniform1d:4:0.3", "--metrics-json", metrics, "--baselines", *FAST)
    assert code == 0
    doc = json.loads(metrics.read_text())
    scores = doc[Path(files["full"]).name]
    assert set(scores) == {"dds", "sense", "zero_filled", "l1_wavelet"}
    assert all(set(v) == {"psnr", "ssim"} for v in scores.values())
    assert scores["sense"]["psnr"] > scores["zero_filled"]["psnr"] + 0.5  # 4 coils, 32x32
    series = {p.name for p in (tmp_path / "o" / "full_ax_flair" / "dicom").iterdir()}
    assert {"21_sense_magnitude", "23_zero_filled_magnitude", "30_reference_magnitude"} <= series


def test_bad_files_fail_alone_with_one_line_each(files, tmp_path):
    bad = {"corrupt.h5": os.urandom(4096), "empty.h5": b""}
    good = Path(files["under"]).read_bytes()
    bad["truncated.h5"] = good[: len(good) // 2]
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    with h5py.File(tmp_path / "not_mri.h5", "w") as f:
        f.create_dataset("temperature", data=np.arange(10.0))
    names = ["corrupt.h5", "empty.h5", "truncated.h5", "not_mri.h5"]
    proc = subprocess.run(
        [sys.executable, "-m", "contextmri_core.cli.main", "replay",
         *[str(tmp_path / n) for n in names], str(files["under"]), "--model", str(files["model"]),
         "--out", str(tmp_path / "o"), *FAST], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 1
    assert _dicoms(tmp_path / "o" / "under_t2" / "dicom")
    assert "Traceback" not in proc.stderr
    for name in names:
        lines = [ln for ln in proc.stderr.splitlines() if name in ln and "ERROR" in ln]
        assert len(lines) == 1, (name, proc.stderr)
        assert "FAILED" in [ln for ln in proc.stdout.splitlines() if name in ln][0]
    assert "empty file" in proc.stderr and "unknown .h5 layout" in proc.stderr


def test_undersampling_an_undersampled_file_is_a_clear_error(files, tmp_path, capsys):
    code = _replay(files["under"], "--undersample", "uniform1d:4", "--model", files["model"],
                   "--out", tmp_path, *FAST)
    assert code == 1
    assert "needs a fully sampled file" in capsys.readouterr().out  # summary line


def test_time_budget_falls_back_to_labelled_sense(files, tmp_path):
    code = _replay(files["under"], "--model", files["model"], "--out", tmp_path,
                   "--time-budget", "1e-6", *FAST)
    assert code == 0
    root = tmp_path / "under_t2" / "dicom"
    assert {p.name for p in root.iterdir()} == {"11_sense_magnitude"}
    for path in _dicoms(root):
        ds = pydicom.dcmread(path)
        assert "FALLBACK" in ds.SeriesDescription
        assert "TimeBudgetExceeded" in str(ds.ImageComments)
        if DCIODVFY:
            assert _dciodvfy_errors(path) == []


def test_yaml_config_and_flags(files, tmp_path, caplog):
    cfg = tmp_path / "replay.yaml"
    cfg.write_text(f"model: {files['model']}\nsteps: 2\noutputs: png\nbatch-size: 1\n"
                   "device: cpu\nprogress: false\n")
    assert _replay(files["under"], "--config", cfg, "--out", tmp_path / "a") == 0
    assert not (tmp_path / "a" / "under_t2" / "dicom").exists()
    assert (tmp_path / "a" / "under_t2" / "png" / "01_dds_magnitude.png").exists()
    assert _replay(files["under"], "--config", cfg, "--outputs", "dicom", "--out",
                   tmp_path / "b") == 0  # the flag wins
    assert _dicoms(tmp_path / "b")
    cfg.write_text("stepz: 3\n")
    assert _replay(files["under"], "--config", cfg, "--out", tmp_path / "c") == 2
    assert "stepz" in caplog.text


def test_logs_carry_no_patient_name_or_id_unless_asked(files, tmp_path, capfd, caplog):
    import logging

    from contextmri_core.data.study import parse_study
    from contextmri_core.io.raw.reader import read_scan

    study = parse_study(read_scan(files["under"]).header_xml)
    assert study.patient_name and study.patient_id
    caplog.set_level(logging.DEBUG)
    args = [files["under"], "--model", files["model"], "--out", tmp_path, *FAST]
    assert main(["-vv", "replay", *map(str, args)]) == 0
    text = caplog.text + "".join(capfd.readouterr())
    assert "under_t2.h5" in text  # the log was captured at all
    assert study.patient_name not in text and study.patient_id not in text
    caplog.clear()
    assert main(["replay", *map(str, args), "--show-phi"]) == 0
    assert study.patient_name in caplog.text and study.patient_id in caplog.text


def test_help_explains_the_job():
    proc = subprocess.run([sys.executable, "-m", "contextmri_core.cli.main", "replay", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0
    for word in ("--undersample", "--metrics-json", "--pacs", "--time-budget", "torchrun",
                 "FALLBACK", "--config"):
        assert word in proc.stdout


@pytest.mark.slow
def test_torchrun_shards_files_and_matches_one_process(files, tmp_path):
    import ismrmrd

    inputs = [str(files["full"]), str(files["under"]), str(files["fastmri"])]
    common = ["replay", *inputs, "--model", str(files["model"]), "--outputs", "ismrmrd", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "contextmri_core.cli.main", *common,
                             "--out", str(tmp_path / "one")], capture_output=True, text=True,
                            timeout=300, cwd=REPO, env=env)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2", "-m", "contextmri_core.cli.main", *common,
                            "--out", str(tmp_path / "two")], capture_output=True, text=True,
                           timeout=300, cwd=REPO, env=env)
    assert multi.returncode == 0, multi.stderr[-3000:]
    for f in inputs:
        stem = Path(f).name[:-3]
        images = []
        for run in ("one", "two"):
            dset = ismrmrd.Dataset(str(tmp_path / run / stem / f"{stem}_images.h5"), "dataset",
                                   create_if_needed=False)
            try:
                images.append(np.stack([dset.read_image("image_01", i).data
                                        for i in range(dset.number_of_images("image_01"))]))
            finally:
                dset.close()
        np.testing.assert_array_equal(images[0], images[1])
    assert multi.stdout.count(" ok ") == 3  # rank 0's summary lists every file


def test_virtual_coils_flag_compresses_before_the_recon(files, tmp_path):
    """``--virtual-coils 2`` on a 4-coil scan: the recon still succeeds (no fallback) and
    SENSE from 2 virtual coils stays within a few dB of SENSE from all 4."""
    scores = {}
    for n in ("4", "2"):
        m = tmp_path / f"m{n}.json"
        assert _replay(files["full"], "--method", "sense", "--undersample", "uniform1d:2:0.3",
                       "--metrics-json", m, "--virtual-coils", n, "--out", tmp_path / n,
                       *FAST) == 0
        scores[n] = json.loads(m.read_text())[Path(files["full"]).name]["sense"]["psnr"]
    assert abs(scores["4"] - scores["2"]) < 3.0, scores
    assert _dicoms(tmp_path / "2" / "full_ax_flair" / "dicom" / "01_sense_magnitude")
