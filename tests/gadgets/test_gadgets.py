"""The Python gadgets run exactly as Gadgetron runs them (``python -m gadgetron PORT
gadgets.contextmri TARGET`` connecting back to our socket), fed over real TCP on 127.0.0.1."""

from __future__ import annotations

import socket
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from contextmri_core.io.mrd import stream as ms
from tests import mrd_helpers as h
from tests.io.mrd.test_stream import HEADER

pytest.importorskip("gadgetron")
NAME = h.NON_ASCII_NAME


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """(model dir, scan path, header with a non-ASCII patient name, acquisitions)."""
    return h.named_scan(tmp_path_factory.mktemp("gadget"))


def _props(model, **extra):
    return {**h.PROPS, "model": str(model), **extra}


def _ids(messages):
    return [m.mid for m in messages]


def test_acquisitions_gadget_matches_the_in_process_reconstructor(scan, tmp_path):
    model, path, header, acqs = scan
    frames = [ms.frame_acquisition(a) for a in acqs]
    msgs = h.run_gadget("acquisitions", _props(model), header, frames, tmp_path / "g.log")
    assert _ids(msgs) == [ms.IMAGE, ms.IMAGE, ms.CLOSE], (tmp_path / "g.log").read_text()
    got, ref = h.magnitudes(msgs), h.reference_magnitudes(path, model)
    assert got.shape == ref.shape == (2, 32, 32)
    assert np.abs(got - ref).max() <= 1e-4 * ref.max()
    heads = [m.payload[0] for m in msgs[:2]]
    assert [x.slice for x in heads] == [0, 1] and [x.image_index for x in heads] == [1, 2]
    assert {x.image_series_index for x in heads} == {1}
    assert heads[0].position[2] != heads[1].position[2]  # each slice's own position
    assert tuple(heads[0].field_of_view)[:2] == pytest.approx((240.0, 240.0))
    meta = {m.findtext("name"): m.findtext("value")
            for m in ET.fromstring(msgs[0].payload[1]).iter("meta")}
    assert meta["prompt"].startswith("brain, Slice 0, T2")
    assert meta["steps"] == "2" and meta["guidance"] == "1.0" and meta["model"] == "model"


def test_buffers_gadget_matches_the_in_process_reconstructor(scan, tmp_path):
    model, path, header, acqs = scan
    frames = h.recon_data_frames(acqs, recon_x=32)
    msgs = h.run_gadget("buffers", _props(model, prewhiten="false"), header, frames,
                        tmp_path / "g.log")
    assert _ids(msgs) == [ms.IMAGE, ms.IMAGE, ms.CLOSE], (tmp_path / "g.log").read_text()
    got, ref = h.magnitudes(msgs), h.reference_magnitudes(path, model, prewhiten=False)
    assert np.abs(got - ref).max() <= 1e-3 * ref.max()


def test_a_failing_model_sends_error_before_close_and_a_sense_fallback(scan, tmp_path):
    _, _, header, acqs = scan
    frames = [ms.frame_acquisition(a) for a in acqs]
    msgs = h.run_gadget("acquisitions", _props(tmp_path / "no_such_model"), header, frames,
                        tmp_path / "g.log")
    ids = _ids(msgs)
    assert ids[0] == ms.ERROR and ids[-1] == ms.CLOSE and ids.count(ms.IMAGE) == 2
    assert "no such model directory" in msgs[0].payload
    assert {m.payload[0].image_series_index for m in msgs if m.mid == ms.IMAGE} == {11}
    assert all(np.isfinite(m.payload[2]).all() for m in msgs if m.mid == ms.IMAGE)


def test_unusable_data_and_unknown_ids_are_errors_not_silent_truncation(scan, tmp_path):
    model, _, header, acqs = scan
    noise_only = [ms.frame_acquisition(a) for a in acqs[:2]]
    msgs = h.run_gadget("acquisitions", _props(model), header, noise_only, tmp_path / "a.log")
    assert _ids(msgs) == [ms.ERROR, ms.CLOSE] and "no imaging acquisitions" in msgs[0].payload
    stray = [ms.frame_acquisition(a) for a in acqs] + [struct.pack("<H", 4242)]
    msgs = h.run_gadget("acquisitions", _props(model), header, stray, tmp_path / "b.log")
    assert _ids(msgs) == [ms.ERROR, ms.CLOSE] and "unknown message id 4242" in msgs[0].payload


def test_shepp_logan_phantom_goes_through_the_gadget(shepp_logan, scan, tmp_path):
    model = scan[0]
    header, acqs = h.read_stream(shepp_logan)
    frames = [ms.frame_acquisition(a) for a in acqs]
    msgs = h.run_gadget("acquisitions", _props(model, steps="1", phase="true"), header, frames,
                        tmp_path / "g.log")
    assert _ids(msgs) == [ms.IMAGE, ms.IMAGE, ms.CLOSE], (tmp_path / "g.log").read_text()
    mag = h.magnitudes(msgs)
    assert mag.shape == (1, 256, 256) and np.isfinite(mag).all() and mag.max() > 0
    assert h.magnitudes(msgs, series=2).shape == (1, 256, 256)  # the phase series


def test_harden_makes_unknown_ids_errors_on_a_gadgetron_connection():
    from gadgetron.external.connection import Connection

    from contextmri_core.io.mrd.gadgetron_compat import harden, items

    a, b = socket.socketpair()
    try:
        a.sendall(ms.frame_text("<configuration/>", ms.CONFIG_TEXT)
                  + ms.frame_header(HEADER)
                  + struct.pack("<H", 999))
        conn = Connection(b)
        send = harden(conn)
        with pytest.raises(ms.ProtocolError, match="unknown message id 999"):
            list(items(conn))
        send(ms.frame_error("x"))
        assert a.recv(64).startswith(struct.pack("<H", ms.ERROR))
    finally:
        a.close()
        b.close()


def test_pacs_property_also_sends_the_images_as_dicom(scan, tmp_path):
    """``pacs`` in the pipeline properties: the gadget still returns its ISMRMRD images and
    sends one DICOM instance per slice (through the outbox, left empty) to a Storage SCP."""
    from tests.io.dicom.test_pacs import FakePacs

    model, path, header, acqs = scan
    pacs = FakePacs()
    try:
        props = _props(model, pacs=f"127.0.0.1:{pacs.port}:FAKEPACS",
                       outbox=str(tmp_path / "outbox"))
        msgs = h.run_gadget("acquisitions", props, header, [ms.frame_acquisition(a) for a in acqs],
                            tmp_path / "g.log")
    finally:
        pacs.server.shutdown()
    assert _ids(msgs) == [ms.IMAGE, ms.IMAGE, ms.CLOSE], (tmp_path / "g.log").read_text()
    assert len(pacs.received) == 2 and pacs.patient_ids == {"sim00000"}
    assert list((tmp_path / "outbox").glob("*.dcm")) == []
