"""contextmri_core: metadata-conditioned diffusion reconstruction of undersampled MRI.

Layering (dependencies point downwards only; enforced by ``tests/core/test_layering.py``)::

    cli      command-line entry points: argument parsing and printing (outermost)
    service  the application: live session + Engine (session), stream server (server),
             offline replay (replay_run, replay_volume), series building / fallback / PACS
             hand-off (series); used by cli and by gadgets/
    recon    reconstructors with one signature (classical, diffusion), the streaming stages
    sampling DDS, DPS, ensembles
    prior    the diffusion prior: UNet presets, condition encoders, schedule
    synth    physics-based synthetic scans (anatomy + signal equations + coils)
    physics  FFTs, linear operators, CG, coil maps, prewhitening, MVUE, masks
    data     plain data: ScanMetadata, header parsing, prompts, k-space containers
    io       the file/wire boundary, by what it talks to (only layer that touches files,
             sockets, h5py, ismrmrd, pydicom, pynetdicom, safetensors, yaml); it may use
             ``data``, ``physics`` and ``prior`` but never ``recon``/``service``/``cli``:
      io/raw     scanner raw files: ISMRMRD v1 and fastMRI .h5 readers and writers, BART cfl
      io/mrd     the ISMRMRD stream protocol: frames, listening socket, images out, buffers
      io/dicom   DICOM writer and values, the outbox, PACS C-ECHO/C-STORE
      io/models  checkpoints, the published ContextMRI layout, training shards
      io/images  PNG, NIfTI and ISMRMRD image files out

Complex data is complex64, k-space of one slice is ``(coils, ky, kx)``; batches prepend ``B``.
"""

import os as _os

# Nothing may download weights at run time: every model loads from local paths only. Set
# before transformers/diffusers/huggingface_hub are imported anywhere in the process.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
