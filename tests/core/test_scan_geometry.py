"""Geometry for conditioning: slice plane from the slice normal or the protocol name, in-plane
pixel spacing and slice thickness from the header, carried per slice by the assembly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from contextmri_core.data.assembly import AcqRecord, assemble_slices
from contextmri_core.data.encoding import EncodingInfo
from contextmri_core.data.geometry import slice_plane
from contextmri_core.data.header import parse_header
from contextmri_core.data.metadata import ScanMetadata
from contextmri_core.data.prompt import build_prompt
from contextmri_core.data.vocab import map_plane

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fastmri_brain_axflair_header.xml"


def tilted(axis: int, toward: int, degrees: float):
    v = [0.0, 0.0, 0.0]
    v[axis], v[toward] = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return tuple(v)


@pytest.mark.parametrize("normal, plane", [
    ((0, 0, 1), "axial"), ((0, 0, -1), "axial"), ((0, 1, 0), "coronal"), ((1, 0, 0), "sagittal"),
    ((-1, 0, 0), "sagittal"), (tilted(2, 1, 20), "axial"), (tilted(1, 2, 29), "coronal"),
    (tilted(0, 1, 15), "sagittal"), (tilted(2, 0, 31), "oblique"), ((1, 1, 1), "oblique"),
    ((0, 0, 3.5), "axial"),  # length does not matter
])
def test_plane_from_the_slice_normal(normal, plane):
    assert slice_plane(normal) == plane


@pytest.mark.parametrize("bad", [(0, 0, 0), (math.nan, 0, 1)])
def test_unusable_normal_is_an_error(bad):
    with pytest.raises(ValueError):
        slice_plane(bad)


@pytest.mark.parametrize("text, plane", [
    ("AXFLAIR", "axial"), ("AX FLAIR_FBB", "axial"), ("AXT1POST", "axial"), ("T2 TSE TRA", "axial"),
    ("CORPD_FBK", "coronal"), ("CORPDFS_FBK", "coronal"), ("t1_se_cor", "coronal"),
    ("t1_mprage_sag", "sagittal"), ("SAGT2", "sagittal"), ("3D T1", None), ("ACORN", None),
    ("COR T2 AX", None), ("", None), (None, None),
])
def test_plane_from_protocol_names(text, plane):
    assert map_plane(text) == plane


def test_fastmri_header_gives_axial_spacing_and_thickness():
    meta = parse_header(FIXTURE.read_text())
    assert meta.slice_plane == "axial"  # from protocol "AXFLAIR"
    assert meta.pixel_spacing_mm == pytest.approx(0.6875)  # 220/320 and 178.75/260
    assert meta.slice_thickness_mm == pytest.approx(5.0)  # reconSpace z


def test_geometry_never_enters_the_published_prompt():
    meta = parse_header(FIXTURE.read_text()).for_slice(3)
    assert "mm" not in build_prompt(meta) and "axial" not in build_prompt(meta)


HEADER = """<?xml version="1.0"?><ismrmrdHeader><encoding>
<encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize>
<fieldOfView_mm><x>{fx}</x><y>{fy}</y><z>{fz}</z></fieldOfView_mm></encodedSpace>
{recon}<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"""
RECON = ("<reconSpace><matrixSize><x>{rx}</x><y>{ry}</y><z>1</z></matrixSize>"
         "<fieldOfView_mm><x>{rfx}</x><y>{rfy}</y><z>{rfz}</z></fieldOfView_mm></reconSpace>")


def test_spacing_from_encoded_space_when_recon_space_is_missing():
    xml = HEADER.format(ex=512, ey=256, fx=460, fy=230, fz=3, recon="")  # 2x readout oversampling
    meta = parse_header(xml)
    assert meta.pixel_spacing_mm == pytest.approx(0.8984375)
    assert meta.slice_thickness_mm == pytest.approx(3.0)


@pytest.mark.parametrize("fov, thickness", [(1e300, 5.0), (-240.0, 5.0), (0.0, 0.0), (240.0, 1e6)])
def test_absurd_grids_are_dropped_not_propagated(fov, thickness):
    recon = RECON.format(rx=256, ry=256, rfx=fov, rfy=fov, rfz=thickness)
    meta = parse_header(HEADER.format(ex=256, ey=256, fx=fov, fy=fov, fz=thickness, recon=recon))
    ok_spacing = 0.05 <= fov / 256 <= 20
    assert (meta.pixel_spacing_mm is not None) == ok_spacing
    assert (meta.slice_thickness_mm is not None) == (0.1 <= thickness <= 100)


def test_metadata_rejects_bad_geometry_values():
    with pytest.raises(ValueError, match="slice_plane"):
        ScanMetadata(slice_plane="transverse")
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        ScanMetadata(pixel_spacing_mm=0.0)


def _line(e1: int, normal) -> AcqRecord:
    return AcqRecord(flags=0, e1=e1, e2=0, slice=0, center_sample=4, discard_pre=0,
                     discard_post=0, data=np.ones((2, 8), np.complex64), slice_dir=normal)


@pytest.mark.parametrize("normal, plane", [((0.0, 1.0, 0.0), "coronal"),
                                           (tilted(0, 2, 10), "sagittal"),
                                           ((0.0, 0.0, 0.0), "axial")])  # zero: header guess stays
def test_assembly_sets_the_plane_of_the_slice_normal(normal, plane):
    enc = EncodingInfo(trajectory="cartesian", encoded_matrix=(8, 8, 1), recon_matrix=(8, 8, 1))
    header_guess = ScanMetadata(slice_plane="axial")
    slices, _ = assemble_slices([_line(e, normal) for e in range(8)], enc, header_guess)
    assert slices[0].metadata.slice_plane == plane
    assert slices[0].metadata.slice_index == 0
