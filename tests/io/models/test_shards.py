"""io.models.shards + io.models.shard_manifest: lazy single-slice reads, the folder manifest and index,
and broken shards named by path."""

import json

import pytest
import torch

from contextmri_core.errors import InputFileError
from contextmri_core.io.models.shard_manifest import (MANIFEST_NAME, build_manifest, index_shards,
                                               read_manifest, write_manifest)
from contextmri_core.io.models.shards import ShardReader, list_shards, load_shards, read_header, read_shard
from tests.training.shard_data import write_set


@pytest.fixture()
def folder(tmp_path):
    return write_set(tmp_path / "shards", [(3, 32, 32), (2, 40, 24), (4, 48, 48)])


def test_single_slice_reads_equal_the_whole_shard_and_keep_native_sizes(folder):
    for path, shape in zip(list_shards(folder), [(3, 32, 32), (2, 40, 24), (4, 48, 48)]):
        whole = read_shard(path)
        assert tuple(whole.x.shape) == shape and whole.x.dtype == torch.complex64
        with ShardReader(path) as r:
            assert r.header.shape == shape and r.header.metadata == whole.metadata
            for i in range(shape[0]):
                assert torch.equal(r.image(i), whole.x[i])
        h = read_header(path)
        assert h.metadata[0].pixel_spacing_mm == pytest.approx(220.0 / shape[2])
        assert h.metadata[0].slice_plane in ("axial", "coronal", "sagittal")
        assert h.metadata[0].slice_thickness_mm == 5.0


def test_manifest_lists_slices_sizes_contrasts_planes_and_spacings(folder):
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    t = doc["totals"]
    assert t["slices"] == 9 and t["shards"] == 3
    assert t["sizes"] == {"32x32": 3, "40x24": 2, "48x48": 4}
    assert t["contrasts"] == {"FLAIR": 2, "T1": 4, "T2": 3}
    assert t["planes"] == {"axial": 3, "coronal": 2, "sagittal": 4}
    assert t["pixel_spacing_mm"]["min"] == pytest.approx(220 / 48)
    assert t["pixel_spacing_mm"]["max"] == pytest.approx(220 / 24)
    assert [s["slices"] for s in doc["shards"]] == [3, 2, 4]
    assert doc["shards"][1]["height"] == 40 and doc["shards"][1]["width"] == 24
    assert doc["unreadable"] == []
    assert read_manifest(folder) == doc == {**build_manifest(folder)}


def test_index_uses_the_manifest_and_rereads_changed_files(folder, monkeypatch):
    from contextmri_core.io.models import shard_manifest

    calls = []
    real = shard_manifest.read_header
    monkeypatch.setattr(shard_manifest, "read_header", lambda p: calls.append(p) or real(p))
    index = index_shards(folder)
    assert calls == [] and [e.num_slices for e in index.entries] == [3, 2, 4]
    write_set(folder, [(5, 16, 16)], seed=7, manifest=False)  # scan000 rewritten, manifest stale
    index = index_shards(folder)
    assert [p.name for p in calls] == ["scan000.safetensors"]
    assert (index.entries[0].num_slices, index.entries[0].height) == (5, 16)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_broken_shard_is_named_and_left_out_of_the_index(folder, damage):
    bad = list_shards(folder)[1]
    data = bad.read_bytes()
    bad.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage])
    with pytest.raises(InputFileError, match=bad.name):
        ShardReader(bad)
    index = index_shards(folder)
    assert [e.path.name for e in index.entries] == ["scan000.safetensors", "scan002.safetensors"]
    assert [p.name for p, _ in index.unreadable] == [bad.name]
    doc = json.loads(write_manifest(folder).read_text())
    assert doc["totals"]["slices"] == 7 and doc["unreadable"][0]["file"] == bad.name


def test_non_finite_values_are_refused_with_the_slice_named(folder):
    path = list_shards(folder)[0]
    raw = bytearray(path.read_bytes())
    header_len = int.from_bytes(raw[:8], "little")  # safetensors: u64 length, JSON, data
    table = json.loads(raw[8:8 + header_len])
    begin = 8 + header_len + table["x"]["data_offsets"][0] + 2 * 32 * 32 * 2 * 4  # slice 2
    raw[begin:begin + 4] = torch.tensor([float("nan")]).numpy().tobytes()
    path.write_bytes(bytes(raw))
    with ShardReader(path) as r:
        assert torch.isfinite(torch.view_as_real(r.image(1))).all()
        with pytest.raises(InputFileError, match="slice 2 holds non-finite"):
            r.image(2)


def test_load_shards_keeps_its_in_memory_api(tmp_path):
    folder = write_set(tmp_path / "same", [(2, 32, 32), (3, 32, 32)])
    x, metas, ids = load_shards(list_shards(folder))
    assert x.shape == (5, 32, 32) and len(metas) == 5 and ids[2] == "scan001.h5:0"
