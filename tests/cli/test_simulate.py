"""``contextmri simulate``: a tiny data set, its layout, annotations, manifest and determinism."""

from __future__ import annotations

import argparse
import csv
import json

import h5py
import numpy as np
import pytest

from contextmri_core.cli import simulate
from contextmri_core.errors import ConfigError


def _run(argv):
    parser = argparse.ArgumentParser(prog="contextmri")
    simulate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate"] + argv)
    return args.func(args)


def _tiny(out, seed=5, extra=()):
    return _run(["--out", str(out), "--seed", str(seed), "--n-subjects", "1", "0", "1",
                 "--matrix", "64", "--coils", "4", "--slices", "2",
                 "--contrasts", "AXT2,AXFLAIR", "--lesion-probability", "1", *extra])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert _tiny(out) == 0
    return out


def test_layout_annotations_and_manifest(dataset):
    files = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*.h5"))
    assert files == sorted(f"{split}/{fmt}/file_brain_{c}_sim{i:05d}.h5"
                           for split, i in (("train", 0), ("test", 1))
                           for fmt in ("ismrmrd", "fastmri") for c in ("AXT2", "AXFLAIR"))
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["counts"] == {"train": 1, "val": 0, "test": 1}
    assert len(manifest["files"]) == 4
    assert manifest["files"][0]["protocol"]["name"] == "AXT2"
    with open(dataset / "annotations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(simulate.ANNOTATION_COLUMNS) if rows else True
    lesion_files = {r["file"] for r in rows}
    for rec in manifest["files"]:
        stem = rec["files"]["fastmri"].split("/")[-1][:-3]
        assert (stem in lesion_files) == any(rec["pathology"])


def test_same_seed_gives_identical_kspace(dataset, tmp_path):
    assert _tiny(tmp_path, extra=["--formats", "fastmri", "--contrasts", "AXFLAIR"]) == 0
    name = "test/fastmri/file_brain_AXFLAIR_sim00001.h5"
    with h5py.File(dataset / name, "r") as a, h5py.File(tmp_path / name, "r") as b:
        assert a["kspace"][()].tobytes() == b["kspace"][()].tobytes()
        assert a["ismrmrd_header"][()] == b["ismrmrd_header"][()]


def test_other_seed_differs(dataset, tmp_path):
    assert _tiny(tmp_path, seed=6, extra=["--formats", "fastmri", "--contrasts", "AXT2"]) == 0
    name = "train/fastmri/file_brain_AXT2_sim00000.h5"
    with h5py.File(dataset / name, "r") as a, h5py.File(tmp_path / name, "r") as b:
        assert not np.allclose(a["kspace"][()], b["kspace"][()])


def test_undersampled_run_writes_masks(tmp_path):
    assert _tiny(tmp_path, extra=["--formats", "fastmri", "--contrasts", "AXT1",
                                  "--acceleration", "4"]) == 0
    with h5py.File(tmp_path / "train/fastmri/file_brain_AXT1_sim00000.h5", "r") as f:
        assert f["mask"][()].sum() == 16 and f.attrs["acceleration"] == 4


def test_bad_contrast_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="AXFLAIR"):
        _tiny(tmp_path, extra=["--contrasts", "AXT9"])


def test_help_explains_that_it_is_simulation(capsys):
    with pytest.raises(SystemExit):
        _run(["--help"])
    text = capsys.readouterr().out
    assert "MNI152" in text and "not patient data" in text and "--acceleration" in text


VARIED = ["--planes", "coronal,sagittal", "--oblique", "15", "--pixel-spacing", "3", "4",
          "--matrix", "48", "64", "--fov-range", "150", "250", "--slice-thickness", "2", "4",
          "--domain-random-fraction", "0.5", "--contrasts", "AXT2,AXFLAIR,AXPD",
          "--formats", "ismrmrd", "--coils", "2"]


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    out = tmp_path_factory.mktemp("varied")
    assert _run(["--out", str(out), "--seed", "9", "--n-subjects", "1", "0", "0",
                 "--slices", "2", *VARIED]) == 0
    return out


def test_varied_geometry_and_contrast_reach_the_files(varied):
    from contextmri_core.data.geometry import slice_plane
    from contextmri_core.io.raw.ismrmrd_reader import read_ismrmrd

    manifest = json.loads((varied / "manifest.json").read_text())
    assert manifest["ranges"]["planes"] == ["coronal", "sagittal"]
    records = manifest["files"]
    assert len(records) == 3
    assert {r["protocol"]["domain_randomised"] for r in records} == {True, False}  # seed 9
    names = [r["files"]["ismrmrd"].split("/")[-1] for r in records]
    for rec, name in zip(records, names):
        g = rec["geometry"]
        prefix = {"coronal": "COR", "sagittal": "SAG"}[g["plane"]]
        assert name.startswith(f"file_brain_{prefix}")
        assert 3 - 0.05 < g["pixel_spacing_mm"] < 4 + 0.05 and g["matrix"] in (48, 64)
        assert 150 <= g["matrix"] * g["pixel_spacing_mm"] <= 250 and g["tilt_deg"] <= 15
        raw = read_ismrmrd(varied / rec["files"]["ismrmrd"])
        assert raw.recon_matrix == (g["matrix"], g["matrix"])
        assert raw.fov_mm[2] == pytest.approx(g["slice_thickness_mm"])
        assert slice_plane(raw.geometry[0].slice_dir) == g["plane"] == g["slice_plane"]
        synth = rec["protocol"]["domain_randomised"]
        assert ("SYNTH" in name) == synth
        assert (raw.metadata.contrast is None) == synth
        assert (raw.metadata.tr_ms is None) == synth


def test_varied_runs_are_deterministic(varied, tmp_path):
    from contextmri_core.io.raw.ismrmrd_reader import read_ismrmrd

    assert _run(["--out", str(tmp_path), "--seed", "9", "--n-subjects", "1", "0", "0",
                 "--slices", "2", *VARIED]) == 0
    for path in sorted((varied / "train" / "ismrmrd").glob("*.h5")):
        a, b = read_ismrmrd(path), read_ismrmrd(tmp_path / "train" / "ismrmrd" / path.name)
        assert a.header_xml == b.header_xml and a.geometry == b.geometry
        for sa, sb in zip(a.slices, b.slices):
            assert sa.kspace.tobytes() == sb.kspace.tobytes()
        assert a.noise.tobytes() == b.noise.tobytes()
