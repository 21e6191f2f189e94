"""The published ContextMRI folder behind every entry point: ``contextmri replay`` of fastMRI
knee (368 phase-encode lines) and brain (320x320) files writes DICOM on the recon matrix while
the UNet sees 320x320 crops with the readout along rows; ``serve``, the gadgets' ``model`` and
``unet`` properties, ``demo``, ``training.evaluate`` and ``contextmri info --model``; a
malformed folder is one clear error."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from contextmri_core.cli.main import main
from contextmri_core.io.raw.reader import read_scan
from tests import mrd_helpers as h
from tests.fastmri_files import brain_file, knee_file

pydicom = pytest.importorskip("pydicom")
FAST = ["--steps", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture
def unet_inputs(monkeypatch):
    """Every (sample size of the UNet, input shape, brightest pixel) handed to any UNet."""
    seen = []
    forward = UNet2DConditionModel.forward

    def spy(self, sample, *args, **kwargs):
        mag = sample[0, 0] ** 2 + sample[0, 1] ** 2
        peak = np.unravel_index(int(torch.argmax(mag)), tuple(mag.shape))
        seen.append((self.config.sample_size, tuple(sample.shape), tuple(int(p) for p in peak)))
        return forward(self, sample, *args, **kwargs)
    monkeypatch.setattr(UNet2DConditionModel, "forward", spy)
    return seen


@pytest.fixture(scope="module")
def fastmri_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fastmri")
    # the knee fully sampled (its marker must survive two steps of a random network), the
    # brain undersampled x4 with 24 ACS lines
    return {"knee": knee_file(d / "file1000007.h5", slices=2, marker=40, acceleration=1),
            "brain": brain_file(d / "file_brain_AXFLAIR_200_6002447.h5")}


def _dicoms(root: Path):
    return sorted(root.rglob("*.dcm"))


def test_replay_of_fastmri_knee_and_brain_writes_dicom_on_the_recon_matrix(
        published_checkpoint, fastmri_files, unet_inputs, tmp_path):
    """Default grid handling (``pad``, measured in benchmarks/grid.py): the knee's 368 lines are
    seen whole (320 readout rows x 368 columns), the brain as 320x320; DICOM on the 320x320
    recon matrix either way."""
    code = main(["replay", str(fastmri_files["knee"]), str(fastmri_files["brain"]), "--model",
                 str(published_checkpoint), "--out", str(tmp_path), *FAST])
    assert code == 0
    assert unet_inputs and {s for s, _, _ in unet_inputs} == {320}  # the fastmri UNet
    knee = [(shape, peak) for _, shape, peak in unet_inputs if shape[0] == 2]
    brain = [(shape, peak) for _, shape, peak in unet_inputs if shape[0] == 1]
    assert {s[-2:] for s, _ in knee} == {(320, 368)} and {s[-2:] for s, _ in brain} == {(320, 320)}
    # the marker, 40 px from the centre along the readout, is along the rows of the input
    assert knee[-1][1] == (160 + 40, 184)
    for key, n_slices in (("knee", 2), ("brain", 1)):
        scan = read_scan(fastmri_files[key])
        dcm = _dicoms(tmp_path / fastmri_files[key].name[:-3] / "dicom" / "01_dds_magnitude")
        assert len(dcm) == n_slices
        for path in dcm:
            ds = pydicom.dcmread(path)
            assert (int(ds.Rows), int(ds.Columns)) == scan.recon_matrix == (320, 320)
            comments = json.loads(ds.ImageComments)
            assert comments["steps"] == 2 and comments["model"] == "MRI_checkpoint"
        prompt = json.loads(pydicom.dcmread(dcm[0]).ImageComments)["prompt"]
        expected = {"knee": "knee, Slice 0, PDFS, Sequence: TurboSpinEcho, TR: 3120, TE: 33, "
                            "TI: 100, Flip angle: 140",
                    "brain": "brain, Slice 0, FLAIR, Sequence: TurboSpinEcho, TR: 9000, "
                             "TE: 86, TI: 2500, Flip angle: 150"}[key]
        assert prompt == expected
    knee_image = pydicom.dcmread(_dicoms(tmp_path / "file1000007" / "dicom")[0]).pixel_array
    row, col = np.unravel_index(int(np.argmax(knee_image)), knee_image.shape)
    assert (row, col) == (160, 160 + 40)  # written back in the scanner's orientation


def test_replay_with_the_crop_window_shows_the_unet_320x320(published_checkpoint, fastmri_files,
                                                            unet_inputs, tmp_path):
    code = main(["replay", str(fastmri_files["knee"]), "--model", str(published_checkpoint),
                 "--grid", "window", "--out", str(tmp_path), *FAST])
    assert code == 0 and {shape[-2:] for _, shape, _ in unet_inputs} == {(320, 320)}
    assert unet_inputs[-1][2] == (160 + 40, 160)
    dcm = _dicoms(tmp_path / "file1000007" / "dicom")
    assert len(dcm) == 2 and {int(pydicom.dcmread(p).Columns) for p in dcm} == {320}


def test_replay_with_a_forced_unet_and_a_path_to_one_unet_folder(
        published_checkpoint, fastmri_files, unet_inputs, tmp_path):
    code = main(["replay", str(fastmri_files["brain"]), "--model", str(published_checkpoint),
                 "--unet", "skm-tea", "--out", str(tmp_path / "forced"), "--steps", "1",
                 "--no-progress", "--device", "cpu"])
    assert code == 0 and {s for s, _, _ in unet_inputs} == {512}
    assert {shape[-2:] for _, shape, _ in unet_inputs} == {(512, 512)}
    dcm = _dicoms(tmp_path / "forced")
    assert len(dcm) == 1 and pydicom.dcmread(dcm[0]).Rows == 320
    assert json.loads(pydicom.dcmread(dcm[0]).ImageComments)["prompt"].startswith(
        "Qdess, Knee, Slice 0")
    unet_inputs.clear()
    code = main(["replay", str(fastmri_files["brain"]), "--model",
                 str(published_checkpoint / "fastmri"), "--out", str(tmp_path / "sub"), *FAST])
    assert code == 0 and {s for s, _, _ in unet_inputs} == {320}
    assert len(_dicoms(tmp_path / "sub")) == 1


def test_a_malformed_folder_is_one_clear_error(published_checkpoint, fastmri_files, tmp_path,
                                               caplog):
    broken = tmp_path / "MRI_checkpoint"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")
    code = main(["replay", str(fastmri_files["brain"]), "--model", str(broken), "--out",
                 str(tmp_path / "o"), *FAST])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert all(s in errors[0] for s in ("lacks scheduler/scheduler_config.json", "text_encoder/",
                                        "contextmri.yaml", "fastmri/ and/or skm-tea/"))


def test_info_describes_a_published_folder_and_our_checkpoint(published_checkpoint,
                                                              fastmri_files, capsys):
    assert main(["info", "--model", str(published_checkpoint)]) == 0
    text = capsys.readouterr().out
    for part in ("published ContextMRI release", "fastmri (320x320", "skm-tea (512x512",
                 "M parameters", "CLIP text encoder (hidden size 32, 77 tokens), published",
                 "scaled_linear", "spacing leading, offset 1", "readout along image rows",
                 "paper: dds 100 steps (scheduler timesteps), eta 0.8, xi 5, 5 CG iterations",
                 "CFG 1 (published)", "clip 0", "support mask off", "grid pad", "fp32"):
        assert part in text, part
    assert main(["info", "--model", str(published_checkpoint), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["kind"] == "published" and [u["name"] for u in card["unets"]] == [
        "fastmri", "skm-tea"]
    assert card["unets"][0]["parameters"] == sum(
        p.numel() for p in UNet2DConditionModel.from_pretrained(
            str(published_checkpoint / "fastmri")).parameters())
    assert card["settings"]["steps"] == 100 and card["settings"]["grid"] == "pad"
    assert main(["info", str(fastmri_files["knee"]), "--model", str(published_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "with the model (fastmri UNet):" in out and "slice 1: knee, Slice 1, PDFS, " in out
    assert main(["info", "--model", str(published_checkpoint / "skm-tea")]) == 0
    assert "this path names the skm-tea UNet" in capsys.readouterr().out
    assert main(["info", "--model", str(h.REPO / "contextmri_core" / "models" / "default")]) == 0
    ours = capsys.readouterr().out
    assert "contextmri checkpoint" in ours and "structured metadata encoder" in ours
    assert "contextmri: dds 50 steps (even timesteps)" in ours and "support mask on" in ours


def test_serve_runs_a_published_folder(small_published_checkpoint, tmp_path):
    """``contextmri serve --model MRI_checkpoint --unet ...`` flags -> the server (in a thread
    here: a fresh interpreter's imports alone can exceed the helper's start-up timeout on a
    loaded CI machine), a client over real TCP."""
    import argparse
    import threading

    # The ISMRMRD client needs ismrmrd >= 1.15; the compat run (1.14, Gadgetron's) skips it
    # like tests/cli/test_serve.py does.
    ConfigFile = pytest.importorskip("ismrmrd.serialization").ConfigFile

    from contextmri_core.cli import serve
    from contextmri_core.service.server import StreamServer
    from tests.cli.test_serve import ismrmrd_client

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    _, _, header, acqs = h.named_scan(tmp_path)
    images = {}
    for unet in (None, "skm-tea"):
        argv = ["serve", "--model", str(small_published_checkpoint), "--port", "0",
                "--steps", "1", "--device", "cpu"] + (["--unet", unet] if unet else [])
        server = StreamServer(serve._config(parser.parse_args(argv)))
        server.warm_up()
        _, port = server.bind()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            images[unet] = ismrmrd_client(port, header, acqs, [ConfigFile("contextmri")])
        finally:
            server.stop()
            thread.join(timeout=30)
    # (the simulated T2 has no TI: the published MR block is left out whole)
    for unet, prompt in ((None, "brain, Slice 0, T2"), ("skm-tea", "Qdess, Knee, Slice 0")):
        got = images[unet]
        assert len(got) == 2 and [i.image_series_index for i in got] == [1, 1]
        meta = {m.findtext("name"): m.findtext("value")
                for m in ET.fromstring(got[0].attribute_string).iter("meta")}
        assert meta["unet"] == (unet or "fastmri") and meta["steps"] == "1"
        assert meta["prompt"].startswith(prompt)


def test_the_gadgets_model_and_unet_properties(small_published_checkpoint, tmp_path):
    pytest.importorskip("gadgetron")
    from contextmri_core.io.mrd import stream as ms

    _, _, header, acqs = h.named_scan(tmp_path)
    frames = [ms.frame_acquisition(a) for a in acqs]
    props = {**h.PROPS, "steps": "1", "model": str(small_published_checkpoint), "unet": "skm-tea"}
    msgs = h.run_gadget("acquisitions", props, header, frames, tmp_path / "g.log", idle_s=300)
    assert [m.mid for m in msgs] == [ms.IMAGE, ms.IMAGE, ms.CLOSE], (tmp_path / "g.log").read_text()
    meta = {m.findtext("name"): m.findtext("value")
            for m in ET.fromstring(msgs[0].payload[1]).iter("meta")}
    assert meta["unet"] == "skm-tea" and meta["prompt"].startswith("Qdess, Knee, Slice 0")
    assert np.isfinite(h.magnitudes(msgs)).all()


def test_demo_runs_a_published_folder(small_published_checkpoint, tmp_path, capsys):
    code = main(["demo", "--model", str(small_published_checkpoint), "--matrix", "32",
                 "--slices", "1", "--steps", "1", "--out", str(tmp_path),
                 "--undersample", "uniform1d:4:0.3"])
    assert code == 0
    scores = json.loads((tmp_path / "metrics.json").read_text())
    assert "dds" in next(iter(scores.values()))


def test_training_evaluate_runs_a_published_folder(small_published_checkpoint, tmp_path):
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate
    from training import evaluate

    cfg = SimConfig(matrix=32, num_slices=1, num_coils=4, lesion_probability=0.0)
    scan = write_ismrmrd(tmp_path / "t2.h5", simulate(7, "AXT2", cfg))
    code = evaluate.main([str(scan), "--model", str(small_published_checkpoint), "--steps", "1",
                          "--masks", "uniform1d:4:0.3", "--guidance", "0,2", "--device", "cpu",
                          "--out", str(tmp_path / "eval")])
    assert code == 0
    rows = (tmp_path / "eval" / "results.csv").read_text()
    assert "dds_cfg0" in rows and "dds_cfg2" in rows and "sense" in rows
