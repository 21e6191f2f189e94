"""Gadgetron 4 external Python gadgets (run as ``python -m gadgetron PORT gadgets.contextmri
TARGET``; the module connects back to Gadgetron's port and calls ``TARGET(connection)``).

``acquisitions``: raw ISMRMRD acquisitions in (noise, ACS and slice assembly done here).
``buffers``: ReconData from BucketToBufferGadget in. Both: properties -> ``StreamSettings``,
core stages in order (``contextmri_core.service.session.run_session``), ISMRMRD images out.
A failure goes out as ERROR (8) before gadgetron-python's CLOSE; unknown message ids are an
error, not an end of stream (both are defects of gadgetron-python 1.4.1 that we work around).

Properties (``<property name=... value=.../>`` in the external's ``<configuration>``; fields of
``contextmri_core.recon.stream.StreamSettings``): model (model folder: a contextmri
checkpoint, the published ContextMRI ``MRI_checkpoint`` or one UNet folder of it; empty =
shipped default), unet (published checkpoint: fastmri | skm-tea; empty = chosen from the
scan), preset (auto | paper | contextmri; auto = paper for a published checkpoint), method
(dds | dps | sense | zero_filled), steps and guidance (empty = the preset's), grid (auto |
full | pad | window | window-zero), support_mask, clip, precision (empty = the preset's), seed,
batch_size,
ensemble (> 1 adds an uncertainty series), device (auto | cpu | cuda), anatomy (override),
phase (true adds a phase series), prewhiten, fallback (sense | zero_filled | none), repetition,
time_budget_s (seconds; past it the fallback reconstructs the rest), pacs (HOST:PORT:AET: also
send the images as DICOM through the outbox), calling_aet, outbox.
Series: 1 magnitude, 2 phase, 3 uncertainty; +10 when a fallback produced the image.
"""

from __future__ import annotations

import logging
from typing import Any

from contextmri_core.io.mrd.buffers import buffer_encoding, recon_data_records
from contextmri_core.io.mrd.gadgetron_compat import harden, items
from contextmri_core.io.mrd.images import GeometryTap
from contextmri_core.io.mrd.stream import header_text
from contextmri_core.io.raw.ismrmrd_reader import record_from_acquisition
from contextmri_core.recon.stream import StreamSettings
from contextmri_core.service.session import (Engine, SessionReport, properties_from_config,
                                             report_error, run_session)

log = logging.getLogger("gadgets.contextmri")
ENGINE = Engine()  # one per gadget process: the model is loaded once


def _settings(connection: Any) -> StreamSettings:
    return StreamSettings.from_properties(properties_from_config(connection.raw_bytes.config))


def _guarded(connection: Any, body) -> SessionReport:
    send = harden(connection)
    try:
        report = body(send)
    except Exception as exc:  # noqa: BLE001 - reported as ERROR before the CLOSE
        log.exception("gadget failed")
        report = SessionReport()
        report_error(send, report, f"contextmri gadget: {type(exc).__name__}: {exc}")
    log.info("sent %d images (%d slices), %d errors", report.images, report.slices,
             len(report.errors))
    return report


def acquisitions(connection: Any) -> None:
    """Raw acquisitions -> images (noise prewhitening, ACS, slice assembly in the core)."""
    def body(send) -> SessionReport:
        tap = GeometryTap()
        acqs = (a for a in tap(items(connection)) if hasattr(a, "idx"))
        records = (record_from_acquisition(a) for a in acqs)
        return run_session(records, connection.raw_bytes.header, _settings(connection),
                           ENGINE, tap, send)
    _guarded(connection, body)


def buffers(connection: Any) -> None:
    """ReconData buffers (BucketToBufferGadget) -> images."""
    from contextmri_core.data.encoding import parse_encoding

    def body(send) -> SessionReport:
        tap = GeometryTap()
        pairs = list(recon_data_records(i for i in items(connection) if hasattr(i, "bits")))
        for _, head in pairs:
            tap.observe(head)
        records = [r for r, _ in pairs]
        enc = parse_encoding(header_text(connection.raw_bytes.header))
        enc = buffer_encoding(enc, records[0].data.shape[-1] if records else None)
        return run_session(iter(records), connection.raw_bytes.header, _settings(connection),
                           ENGINE, tap, send, encoding=enc)
    _guarded(connection, body)
