"""Test helpers for the stream protocol, the gadgets and the server: a tiny random prior on
disk, a synthetic undersampled ISMRMRD scan, Gadgetron's side of the socket, the in-process
reference reconstruction."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60.0
#: The settings every streamed test uses (tiny and fast on 2 CPU cores).
PROPS = {"steps": "2", "guidance": "1.0", "seed": "0", "device": "cpu", "batch_size": "4"}


def tiny_model(directory: Path) -> Path:
    """A random ``contextmri-small`` prior at 32x32 saved to ``directory``."""
    import torch

    from contextmri_core.io.models.checkpoint import save_prior
    from contextmri_core.prior.build import new_prior
    from contextmri_core.prior.encoders.factory import EncoderConfig

    torch.manual_seed(0)
    enc = EncoderConfig.from_dict({"kind": "structured", "structured": {"dim": 32, "hidden": 32}})
    prior = new_prior("contextmri-small", enc, image_size=(32, 32), block_out_channels=[8, 8, 8, 8],
                      norm_num_groups=8, attention_head_dim=8, cross_attention_dim=32,
                      addition_embed_type_num_heads=2)
    return save_prior(prior, directory)


def synthetic_scan(path: Path, seed: int = 3, slices: int = 2) -> Path:
    """A 32x32, 4-coil, x4 undersampled AXT2 scan with a noise scan and flagged ACS."""
    from contextmri_core.io.raw.ismrmrd_writer import write_ismrmrd
    from contextmri_core.synth.scan import SimConfig, simulate

    cfg = SimConfig(matrix=32, num_slices=slices, num_coils=4, acceleration=4, center_fraction=0.3,
                    lesion_probability=0.0)
    return write_ismrmrd(path, simulate(seed, "AXT2", cfg))


def read_stream(path: Path) -> Tuple[bytes, list]:
    """(header XML bytes, acquisitions) of an ISMRMRD file, in file order."""
    import ismrmrd

    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        header = dset.read_xml_header()
        acqs = [dset.read_acquisition(i) for i in range(dset.number_of_acquisitions())]
    finally:
        dset.close()
    return (header if isinstance(header, bytes) else header.encode("utf-8")), acqs


def reference_magnitudes(path: Path, model: Path, steps: int = 2, seed: int = 0,
                         prewhiten: bool = True) -> np.ndarray:
    """In-process DDS reconstruction of ``path``: (slices, ny, nx) magnitudes."""
    from contextmri_core.io.models.checkpoint import load_prior
    from contextmri_core.io.raw.ismrmrd_reader import read_ismrmrd
    from contextmri_core.recon.diffusion import DiffusionReconConfig, DiffusionReconstructor
    from contextmri_core.recon.prepare import prepare_slices
    from contextmri_core.sampling.dds import DDSConfig

    scan = read_ismrmrd(path)
    batch = prepare_slices(scan.slices, scan.noise if prewhiten else None)
    recon = DiffusionReconstructor(load_prior(model), DiffusionReconConfig(
        dds=DDSConfig(steps=steps, guidance=1.0), seed=seed, batch_size=4))
    out = recon(batch.kspace, batch.mask, batch.maps, batch.metadata)
    return out.image.abs().numpy()


#: A patient name that ASCII-only header handling would break.
NON_ASCII_NAME = "Müller^Jörg"


def named_scan(tmp: Path):
    """(tiny model dir, synthetic scan path, its header with ``NON_ASCII_NAME`` as the patient
    name, its acquisitions)."""
    model = tiny_model(tmp / "model")
    path = synthetic_scan(tmp / "scan.h5")
    header, acqs = read_stream(path)
    header = header.decode("utf-8").replace("SIM^00000", NON_ASCII_NAME).encode("utf-8")
    assert NON_ASCII_NAME.encode("utf-8") in header
    return model, path, header, acqs


def config_xml(props: dict) -> str:
    body = "".join(f'<property name="{k}" value="{v}"/>' for k, v in props.items())
    return f"<?xml version=\"1.0\"?><configuration>{body}</configuration>"


def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    sock.settimeout(TIMEOUT_S)
    return sock


def child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               GADGETRON_EXTERNAL_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def launch_gadget(port: int, target: str, log_path: Path) -> subprocess.Popen:
    """``python -m gadgetron PORT gadgets.contextmri TARGET``, as Gadgetron starts it."""
    with log_path.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "gadgetron", str(port),
                                 "gadgets.contextmri", target], cwd=str(REPO), env=child_env(),
                                stdout=out, stderr=subprocess.STDOUT)


def stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def receive_all(sock: socket.socket, idle_s: float = TIMEOUT_S) -> List:
    """Frames until CLOSE (inclusive), read with our protocol layer."""
    from contextmri_core.io.mrd.stream import CLOSE, SocketReader, read_message

    reader = SocketReader(sock, idle_s)
    out = []
    while True:
        msg = read_message(reader.read_exactly)
        out.append(msg)
        if msg.mid == CLOSE:
            return out


def magnitudes(messages: List, series: int = 1) -> np.ndarray:
    """(slices, ny, nx) from the IMAGE frames of ``series``, ordered by slice."""
    from contextmri_core.io.mrd.stream import IMAGE

    imgs = [(m.payload[0].slice, m.payload[2]) for m in messages
            if m.mid == IMAGE and m.payload[0].image_series_index == series]
    return np.stack([d[0, 0] for _, d in sorted(imgs, key=lambda t: t[0])])


def run_gadget(target: str, props: dict, header: bytes, frames: List[bytes], log_path: Path,
               idle_s: float = TIMEOUT_S) -> List:
    """Play Gadgetron's side: listen, launch the module, send config, header and ``frames``,
    then CLOSE; return every frame the module sent back (up to and including its CLOSE)."""
    from contextmri_core.io.mrd.stream import CONFIG_TEXT, frame_close, frame_header, frame_text

    srv, proc = listener(), None
    try:
        proc = launch_gadget(srv.getsockname()[1], target, log_path)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(idle_s)
            conn.sendall(frame_text(config_xml(props), CONFIG_TEXT) + frame_header(header))
            for frame in frames:
                conn.sendall(frame)
            conn.sendall(frame_close())
            return receive_all(conn, idle_s)
    finally:
        stop(proc)
        srv.close()


def recon_data_frames(acqs: list, recon_x: int) -> List[bytes]:
    """Play BucketToBufferGadget (after NoiseAdjust and RemoveROOversampling): one ReconData
    (id 1023) per slice, serialised with gadgetron-python's own writer."""
    import ismrmrd
    from gadgetron.types.recon_data import (ReconBit, ReconBuffer, ReconData, SamplingDescription,
                                            write_recon_data)

    from contextmri_core.data.assembly import is_noise, remove_readout_oversampling

    lines = [a for a in acqs if not is_noise(int(a.flags))]
    out = []
    for s in sorted({int(a.idx.slice) for a in lines}):
        mine = [a for a in lines if int(a.idx.slice) == s]
        e1 = max(int(a.idx.kspace_encode_step_1) for a in lines) + 1
        coils = mine[0].data.shape[0]
        data = np.zeros((recon_x, e1, 1, coils, 1, 1, 1), np.complex64)
        heads = np.empty((e1, 1, 1, 1, 1), dtype=object)
        for i in range(e1):
            heads[i, 0, 0, 0, 0] = ismrmrd.AcquisitionHeader()
        for a in mine:
            row = int(a.idx.kspace_encode_step_1)
            data[:, row, 0, :, 0, 0, 0] = remove_readout_oversampling(np.asarray(a.data), recon_x).T
            head = ismrmrd.AcquisitionHeader.from_buffer_copy(bytes(a.getHead()))
            head.number_of_samples, head.center_sample = recon_x, recon_x // 2
            heads[row, 0, 0, 0, 0] = head
        sink = _Sink()
        write_recon_data(sink, ReconData([ReconBit(ReconBuffer(
            data, None, None, heads, SamplingDescription()))]))
        out.append(sink.data)
    return out


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, chunk) -> None:
        self.data += bytes(chunk)
