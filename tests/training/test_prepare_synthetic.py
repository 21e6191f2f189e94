"""training.prepare_synthetic: readable shards on native grids, resumable, summarised."""

from __future__ import annotations

import json

import pytest

from contextmri_core.errors import ConfigError
from contextmri_core.io.models.shard_manifest import MANIFEST_NAME, index_shards
from contextmri_core.io.models.shards import list_shards, read_shard
from training import prepare_synthetic

ARGS = ["--seed", "4", "--n-subjects", "2", "--slices-per-subject", "3", "--slices-per-scan",
        "2", "--workers", "1", "--matrix", "32", "48", "--pixel-spacing", "4", "6",
        "--fov-range", "140", "260", "--coils", "4", "--domain-random-fraction", "0.5"]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    assert prepare_synthetic.main([str(folder)] + ARGS) == 0
    return folder


def test_one_readable_shard_per_scan_on_its_native_grid(out):
    paths = list_shards(out)
    assert [p.name for p in paths] == [f"s4_sim{i:05d}_g{g:02d}.safetensors"
                                       for i in (0, 1) for g in (0, 1)]
    for p in paths:
        shard = read_shard(p)
        n = shard.x.shape[-1]
        assert shard.x.shape[-2] == n and n in (32, 48) and len(shard.slices) in (1, 2)
        assert shard.source.startswith("synthetic/seed4/sim")
        for meta, prompt in zip(shard.metadata, shard.prompts):
            assert meta.anatomy == "brain" and meta.slice_plane in ("axial", "coronal",
                                                                    "sagittal")
            assert 4.0 - 0.1 < meta.pixel_spacing_mm < 6.0 + 0.1
            assert 1.0 <= meta.slice_thickness_mm <= 6.0
            assert prompt.startswith(f"brain, Slice {meta.slice_index}")
    summary = json.loads((out / "synthetic_summary.json").read_text())
    assert summary["shards_written"] == 4 and summary["slices_written"] == 6
    assert sum(summary["planes"].values()) == 4
    index = index_shards(out)  # the manifest training.fit reads: every shard, no stale entry
    assert (out / MANIFEST_NAME).is_file() and index.num_slices == 6 and not index.unreadable
    assert sorted(e.path.name for e in index.entries) == [p.name for p in paths]


def test_a_second_run_keeps_what_is_there(out):
    before = {p.name: p.stat().st_mtime_ns for p in list_shards(out)}
    assert prepare_synthetic.main([str(out)] + ARGS + ["--workers", "0"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in list_shards(out)} == before
    summary = json.loads((out / "synthetic_summary.json").read_text())
    assert summary["shards_written"] == 0 and summary["shards_skipped"] == 4


def test_bad_flags_name_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--planes"):
        prepare_synthetic.main([str(tmp_path), "--seed", "1", "--n-subjects", "1",
                                "--planes", "axial,diagonal"])
