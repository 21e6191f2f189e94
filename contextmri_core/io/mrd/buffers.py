"""Gadgetron ReconData buffers (BucketToBufferGadget, id 1023) -> ``AcqRecord`` lines.

A buffer's ``data`` is ``(RO, E1, E2, CHA, N, S, LOC)`` complex64 on the (oversampling-removed)
encoding grid, its ``headers`` ``(E1, E2, N, S, LOC)`` acquisition headers, zero where no line
was acquired. Turning the filled positions back into lines lets the one assembly function
(``contextmri_core.data.assembly``) build the slices, so buffers and raw acquisitions cannot
disagree. Separate calibration lines come from the ``ref`` buffer; embedded ones are already
in ``data``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Any, Iterable, Iterator, Optional, Tuple

import numpy as np

from contextmri_core.data.assembly import (AcqRecord, is_calibration_and_imaging,
                                           is_parallel_calibration)
from contextmri_core.data.encoding import EncodingInfo

log = logging.getLogger(__name__)


def buffer_records(buffer: Any, only_separate_acs: bool = False) -> Iterator[Tuple[AcqRecord, Any]]:
    """``(record, acquisition header)`` for every acquired line of one ReconBuffer."""
    data = np.asarray(buffer.data)
    if data.ndim != 7:
        raise ValueError(f"ReconBuffer data must be 7-D (RO, E1, E2, CHA, N, S, LOC), "
                         f"got shape {data.shape}")
    heads = np.asarray(buffer.headers, dtype=object)
    ro = data.shape[0]
    for e1, e2, n, s, loc in itertools.product(*(range(k) for k in heads.shape)):
        head = heads[e1, e2, n, s, loc]
        if head is None or int(head.number_of_samples) == 0:
            continue
        flags = int(head.flags)
        if only_separate_acs and not (is_parallel_calibration(flags)
                                      and not is_calibration_and_imaging(flags)):
            continue
        line = np.ascontiguousarray(data[:, e1, e2, :, n, s, loc].T).astype(np.complex64)
        idx = head.idx
        yield AcqRecord(flags=flags, e1=int(idx.kspace_encode_step_1),
                        e2=int(idx.kspace_encode_step_2), slice=int(idx.slice),
                        center_sample=ro // 2, discard_pre=0, discard_post=0, data=line,
                        repetition=int(idx.repetition), average=int(idx.average),
                        slice_dir=tuple(float(v) for v in head.slice_dir)), head


def recon_data_records(items: Iterable[Any]) -> Iterator[Tuple[AcqRecord, Any]]:
    """Records of every bit of every ReconData in ``items`` (data, then separate ACS)."""
    for recon_data in items:
        for bit in recon_data.bits:
            yield from buffer_records(bit.data)
            if bit.ref is not None:
                yield from buffer_records(bit.ref, only_separate_acs=True)


def buffer_encoding(enc: EncodingInfo, readout_samples: Optional[int]) -> EncodingInfo:
    """The header's encoding with the readout already on the buffer's grid (Gadgetron removed
    the oversampling upstream when the buffer is narrower than the encoded matrix)."""
    if readout_samples is None or enc.encoded_matrix is None:
        return enc
    x, y, z = enc.encoded_matrix
    if readout_samples == x:
        return enc
    fov = enc.encoded_fov_mm
    scale = readout_samples / x
    new_fov = None if fov is None else (fov[0] * scale, fov[1], fov[2])
    log.info("buffer readout %d samples (encoded %d): oversampling already removed",
             readout_samples, x)
    return dataclasses.replace(enc, encoded_matrix=(readout_samples, y, z), encoded_fov_mm=new_fov)
