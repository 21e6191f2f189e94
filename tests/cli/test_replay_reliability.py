"""``contextmri replay`` / ``info`` as a careless user or an attacker would use them (issue 13):
equal file names, absurd headers, huge encoded matrices, non-finite samples, a broken model,
unusable output folders, a full disk, PHI in logs, and the small frictions of the summary."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contextmri_core.cli.main import main
from tests.mrd_helpers import REPO, child_env, synthetic_scan, tiny_model
from tests.scan_edits import edit_header, imaging_rows, set_samples

pydicom = pytest.importorskip("pydicom")
FAST = ["--no-progress", "--device", "cpu"]
SENSE = ["--method", "sense", *FAST]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    return {"dir": d, "model": tiny_model(d / "model"), "scan": synthetic_scan(d / "scan.h5")}


def _cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "contextmri_core.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=child_env())


def _dicoms(root: Path):
    return sorted(root.rglob("*.dcm"))


def _patient_ids(root: Path) -> set:
    return {str(pydicom.dcmread(p).PatientID) for p in _dicoms(root)}


# ----------------------------------------------------------------------------- item 4
def test_outputs_of_inputs_with_the_same_name_never_collide(base, tmp_path, capsys):
    src = base["scan"]
    inputs = []
    for folder, name, pid in (("a", "scan.h5", "PID_A"), ("b", "scan.h5", "PID_B"),
                              ("c", "scan_2.h5", "PID_C")):
        (tmp_path / folder).mkdir()
        inputs.append(edit_header(src, tmp_path / folder / name,
                                  ("<patientID>sim00000</patientID>",
                                   f"<patientID>{pid}</patientID>")))
    out = tmp_path / "out"
    assert main(["replay", *map(str, inputs), "--out", str(out), *SENSE]) == 0
    summary = capsys.readouterr().out
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders) == 3, folders
    by_input = {}
    for path in inputs:  # the summary names each input and the folder that holds it
        line = next(ln for ln in summary.splitlines() if str(path) in ln)
        by_input[path] = next(f for f in folders if f in line.split())
    assert sorted(by_input.values()) == folders
    for path, pid in zip(inputs, ("PID_A", "PID_B", "PID_C")):
        assert _patient_ids(out / by_input[path]) == {pid}
        assert len(_dicoms(out / by_input[path])) == 2
    assert by_input[inputs[2]] == "scan_2"  # a file keeps its own name where it can


# ----------------------------------------------------------------------------- item 9
def test_absurd_header_values_are_dropped_and_every_command_still_works(base, tmp_path):
    """A negative TR and a flip angle of 1e300 (each range is unit-tested in test_header)."""
    bad = edit_header(base["scan"], tmp_path / "absurd.h5", ("<TR>4250</TR>", "<TR>-5</TR>"),
                      ("<flipAngle_deg>165", "<flipAngle_deg>1e300"))
    info = _cli("info", bad)
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    assert "out of range" in info.stderr and "TR: " not in info.stdout
    rep = _cli("replay", bad, "--out", tmp_path / "o", "--model", base["model"], "--steps", "2",
               *FAST)
    assert rep.returncode == 0 and "Traceback" not in rep.stderr, rep.stderr
    files = _dicoms(tmp_path / "o" / "absurd")
    assert len(files) == 2
    for path in files:
        ds = pydicom.dcmread(path)
        assert "RepetitionTime" in ds and ds.RepetitionTime in (None, "")  # type 2: empty
        assert "TR:" not in json.loads(ds.ImageComments)["prompt"]
        assert "FlipAngle" not in ds
        assert float(ds.EchoTime) == pytest.approx(104.0)


# ----------------------------------------------------------------------------- item 3
def test_a_huge_encoded_matrix_is_refused_in_one_line_by_info_and_replay(base, tmp_path):
    big = edit_header(base["scan"], tmp_path / "big.h5", ("<y>32</y>", "<y>100000</y>"))
    for args in (("info", big), ("replay", big, "--out", tmp_path / "o", *SENSE)):
        proc = _cli(*args, timeout=120)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if "big.h5" in ln and "ERROR" in ln
                 or ln.startswith("contextmri info: error")]
        assert len(lines) == 1 and "encodedSpace y=100000" in lines[0], proc.stderr
    assert not _dicoms(tmp_path / "o")


# ----------------------------------------------------------------------------- item 8
def test_non_finite_samples_are_masked_counted_and_said(base, tmp_path, caplog):
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=32, num_slices=2, num_coils=4, acceleration=2, center_fraction=0.25,
                    lesion_probability=0.0)
    clean = write_ismrmrd(tmp_path / "r2.h5", simulate(3, "AXT2", cfg))
    rows = imaging_rows(clean, slice_index=0)  # outside the ACS block
    bad = set_samples(clean, tmp_path / "nan.h5", [
        (rows[2], 1, 20, complex(np.nan, 0)), (rows[5], 0, 30, complex(np.inf, 1)),
        (rows[5], 3, 31, complex(0, -np.inf))])
    caplog.set_level(logging.INFO)
    for name, path in (("clean", clean), ("nan", bad)):
        assert main(["replay", str(path), "--out", str(tmp_path / name), *SENSE]) == 0
    assert "3 non-finite k-space samples" in caplog.text
    clean = [pydicom.dcmread(p) for p in _dicoms(tmp_path / "clean")]
    dirty = [pydicom.dcmread(p) for p in _dicoms(tmp_path / "nan")]
    for c, d in zip(clean, dirty):
        a = c.pixel_array * float(c.RealWorldValueMappingSequence[0].RealWorldValueSlope)
        b = d.pixel_array * float(d.RealWorldValueMappingSequence[0].RealWorldValueSlope)
        assert b.max() > 0 and np.linalg.norm(a - b) < 0.1 * np.linalg.norm(a)
        comments = json.loads(d.ImageComments)
        assert comments["nonfinite_kspace_samples"] == {"0": 3}


@pytest.fixture(scope="module")
def nan_model(base):
    """The tiny model with NaN in one weight: every DDS output is NaN."""
    import shutil

    from safetensors.numpy import load_file, save_file

    broken = base["dir"] / "nan_model"
    shutil.copytree(base["model"], broken)
    weights = next(broken.glob("unet*.safetensors"))
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("conv_out.weight"))
    tensors[name] = np.full_like(tensors[name], np.nan)
    save_file(tensors, str(weights))
    return broken


def test_a_non_finite_reconstruction_is_a_labelled_fallback_not_ok(base, nan_model, tmp_path,
                                                                   capsys):
    assert main(["replay", str(base["scan"]), "--model", str(nan_model), "--steps", "2",
                 "--out", str(tmp_path), *FAST]) == 0
    summary = capsys.readouterr().out
    assert {p.name for p in (tmp_path / "scan" / "dicom").iterdir()} == {"11_sense_magnitude"}
    for path in _dicoms(tmp_path):
        ds = pydicom.dcmread(path)
        assert "FALLBACK" in ds.SeriesDescription
        assert "non-finite" in json.loads(ds.ImageComments)["fallback_reason"]
        assert ds.pixel_array.max() > 0
    line = next(ln for ln in summary.splitlines() if "scan.h5" in ln)
    assert "sense FALLBACK" in line and "dds" not in line.split("scan.h5")[-1].split()[2]


# ----------------------------------------------------------------------------- item 11
def test_the_summary_names_the_method_that_made_the_images(base, tmp_path, capsys):
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=32, num_slices=2, num_coils=4, acceleration=4, center_fraction=0.03,
                    lesion_probability=0.0)
    no_acs = write_ismrmrd(tmp_path / "no_acs.h5", simulate(3, "AXT2", cfg))
    assert main(["replay", str(no_acs), "--out", str(tmp_path / "o"), *SENSE]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "no_acs.h5" in ln)
    assert "zero_filled FALLBACK" in line and "sense" not in line, line


def test_info_takes_folders_like_replay(base, tmp_path, capsys, caplog):
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("one.h5", "two.h5"):
        shutil.copyfile(base["scan"], folder / name)
    (folder / "notes.txt").write_text("not a scan")
    assert main(["info", "--json", str(folder)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [Path(d["file"]).name for d in doc] == ["one.h5", "two.h5"]
    (tmp_path / "empty").mkdir()
    assert main(["info", str(tmp_path / "empty")]) != 0
    assert "no .h5 files" in caplog.text


def test_an_unusable_output_folder_is_refused_before_reconstructing(base, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("x")
    for out, extra in ((blocker, ()), (tmp_path / "ok", ("--pacs", "127.0.0.1:9:X",
                                                          "--outbox", blocker / "box"))):
        caplog.clear()
        code = main(["replay", str(base["scan"]), "--out", str(out), "--model",
                     str(base["model"]), *map(str, extra), *FAST])
        assert code == 2, caplog.text
        assert "loaded model" not in caplog.text and "prepared" not in caplog.text
        assert "not usable" in caplog.text and str(blocker) in caplog.text


def _unshare_mount_ok() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _in_mount_namespace(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a bash ``script`` in a private mount namespace (mounts vanish with it)."""
    if not _unshare_mount_ok():
        pytest.skip("unshare --mount is not permitted here")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-ec",
                           script], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=child_env())


def test_a_read_only_output_folder_is_refused_before_reconstructing(base, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = _in_mount_namespace(
        f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} && "
        f"{sys.executable} -m contextmri_core.cli.main replay {base['scan']} --out {ro}/out "
        f"--model {base['model']} --no-progress --device cpu", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "not usable" in proc.stderr and "Read-only" in proc.stderr
    assert "loaded model" not in proc.stderr and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- item 7
def test_disk_full_leaves_no_partial_files(base, tmp_path):
    """A tmpfs of 8 KiB holds the two DICOM files of the series but not the PNG: the file
    fails with one line and the output folder stays empty (nothing looks complete)."""
    out = tmp_path / "full"
    out.mkdir()
    proc = _in_mount_namespace(
        f"mount -t tmpfs -o size=8k tmpfs {out}; rc=0; "
        f"{sys.executable} -m contextmri_core.cli.main replay {base['scan']} --out {out} "
        f"--method sense --no-progress --device cpu || rc=$?; echo rc=$rc; "
        f"find {out} -mindepth 1 | sort")
    lines = proc.stdout.splitlines()
    rc_line = next(ln for ln in lines if ln.startswith("rc="))
    left = lines[lines.index(rc_line) + 1:]
    assert rc_line == "rc=1", proc.stdout + proc.stderr
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert "staging" not in proc.stderr + proc.stdout  # the message names the real folder
    assert left == [], left


# ----------------------------------------------------------------------------- item 10
def test_no_patient_data_in_logs_for_a_malformed_birth_date(base, tmp_path, caplog, capfd):
    bad = edit_header(base["scan"], tmp_path / "bd.h5", ("1995-01-05", "19550831"))
    caplog.set_level(logging.DEBUG)
    assert main(["-vv", "info", str(bad)]) == 0
    assert main(["-vv", "replay", str(bad), "--out", str(tmp_path / "o"), *SENSE]) == 0
    text = caplog.text + capfd.readouterr().err
    assert "birth date" in text  # the warning is there, the value is not
    assert "19550831" not in text and "1955" not in text


# ----------------------------------------------------------------------------- item 13
def test_summary_line_is_info_and_png_title_separates_series_and_method(base, tmp_path, caplog):
    from PIL import Image

    caplog.set_level(logging.DEBUG)
    assert main(["replay", str(base["scan"]), "--out", str(tmp_path), *SENSE]) == 0
    done = [r for r in caplog.records if r.getMessage().startswith("scan.h5: 2 slices")]
    assert len(done) == 1 and done[0].levelno == logging.INFO
    png = Image.open(tmp_path / "scan" / "png" / "01_sense_magnitude.png")
    title = png.text["Title"]
    assert title == "01 AX T2 | SENSE magnitude", title
    assert png.size[0] >= 256  # wide enough to show the title
