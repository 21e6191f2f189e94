"""contextmri_core: metadata-conditioned diffusion reconstruction of undersampled MRI.

Layering (dependencies point downwards only; enforced by ``tests/core/test_layering.py``)::

    cli      command-line entry points (outermost; nothing in the core imports it)
    recon    reconstruction apps with one signature (classical now, diffusion later)
    synth    physics-based synthetic scans (anatomy + signal equations + coils)
    physics  FFTs, linear operators, CG, coil maps, prewhitening, MVUE, masks
    data     plain data: ScanMetadata, header parsing, prompts, k-space containers
    io       the file/wire boundary: ISMRMRD, fastMRI .h5, BART cfl (only layer that
             touches h5py / ismrmrd); it may use ``data`` and ``physics`` but never apps

Complex data is complex64, k-space of one slice is ``(coils, ky, kx)``; batches prepend ``B``.
"""

import os as _os

# Nothing may download weights at run time: every model loads from local paths only. Set
# before transformers/diffusers/huggingface_hub are imported anywhere in the process.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
