"""``python -m training.prepare RAW_DIR OUT_DIR``: raw ISMRMRD / fastMRI .h5 scans -> training
shards (normalised complex MVUE targets + ScanMetadata + prompt per slice).

Per file: read it (header metadata incl. slice plane, in-plane pixel spacing and slice
thickness; noise prewhitening, ACS), ESPIRiT maps from the central calibration block, MVUE on
the scan's native grid (centre-cropped to the header's reconstruction matrix where the
k-space grid is larger, or to ``--size`` when asked), divide by the 99th percentile of |x|.
Resumable (existing shards are kept), parallel over files, broken files are reported and
skipped. Pathology labels come from a fastMRI+-style CSV (``--annotations``). Finally
``OUT_DIR/manifest.json`` lists every shard (slices, matrix, contrasts, planes, spacings);
``python -m training.prepare --summary DIR`` prints a folder's summary.
"""

from __future__ import annotations

import argparse
import csv
import logging
import multiprocessing as mp
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

log = logging.getLogger("training.prepare")
Labels = Dict[Tuple[str, int], Tuple[str, ...]]


def read_annotations(path: Optional[Path]) -> Labels:
    """fastMRI+ CSV (``file,slice,study_level,x,y,width,height,label``) -> per-slice labels
    (study-level rows and rows without a slice are ignored); keys use the file stem."""
    if path is None:
        return {}
    found: Dict[Tuple[str, int], List[str]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            label, sl = (row.get("label") or "").strip(), (row.get("slice") or "").strip()
            if not label or not sl or (row.get("study_level") or "").strip().lower() == "yes":
                continue
            key = (Path(row["file"]).stem, int(float(sl)))
            if label not in found[key]:
                found[key].append(label)
    return {k: tuple(v) for k, v in found.items()}


def native_size(recon_matrix: Tuple[int, int], grid: Tuple[int, int]) -> Tuple[int, int]:
    """The image size of a shard: the header's reconstruction matrix ``(ny, nx)`` where it is
    known and fits inside the k-space ``grid``, else the grid."""
    return tuple(r if 0 < r <= g else g for r, g in zip(recon_matrix, grid))


def prepare_file(src: Path, out: Path, size: Optional[Tuple[int, int]], labels: Labels) -> int:
    """One raw file -> one shard; returns the number of slices written."""
    import dataclasses

    import torch

    from contextmri_core.data.prompt import build_prompt
    from contextmri_core.io.raw.reader import read_scan
    from contextmri_core.io.models.shards import Shard, write_shard
    from contextmri_core.recon.prepare import mvue_targets, prepare_scan

    torch.set_num_threads(1)
    scan = read_scan(src)
    slices = [dataclasses.replace(
        s, metadata=s.metadata.for_slice(s.metadata.slice_index or i,
                                         labels.get((src.stem, s.metadata.slice_index or i), ())))
        for i, s in enumerate(scan.slices)]
    batch = prepare_scan(dataclasses.replace(scan, slices=tuple(slices)))
    x, scale = mvue_targets(batch, size or native_size(scan.recon_matrix,
                                                       tuple(batch.kspace.shape[-2:])))
    metas = tuple(batch.metadata)
    write_shard(out, Shard(x=x, scale=scale, metadata=metas,
                           prompts=tuple(build_prompt(m) for m in metas), source=str(src),
                           slices=tuple(m.slice_index for m in metas)))
    return len(metas)


def shard_path(out: Path, raw: Path, src: Path) -> Path:
    """``OUT/<relative path with / as __>.safetensors``: unique even when the same scan is
    present in several formats or splits."""
    rel = src.relative_to(raw).with_suffix("")
    return out / ("__".join(rel.parts) + ".safetensors")


def _job(args) -> Tuple[str, int, str]:
    src, out, size, labels = args
    try:
        return str(src), prepare_file(Path(src), Path(out), size, labels), ""
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop the others
        return str(src), 0, f"{type(exc).__name__}: {exc}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", type=Path, nargs="?", help="directory searched recursively for *.h5")
    p.add_argument("out", type=Path, nargs="?", help="directory for the shards (created)")
    p.add_argument("--size", type=int, nargs=2, metavar=("NY", "NX"),
                   help="centre-crop every target to this size (default: keep each scan's "
                        "native matrix; training crops patches)")
    p.add_argument("--summary", type=Path, metavar="DIR",
                   help="print the summary of shard folder DIR (its manifest) and exit")
    p.add_argument("--annotations", type=Path, help="fastMRI+ annotation CSV for pathology")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    if args.summary is not None:
        return print_summary(args.summary)
    if args.raw is None or args.out is None:
        parser.error("give RAW_DIR and OUT_DIR (or --summary DIR)")
    files = sorted(args.raw.rglob("*.h5"))
    if not files:
        log.error("no .h5 files under %s", args.raw)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    labels = read_annotations(args.annotations)
    size = tuple(args.size) if args.size else None
    todo = [(f, shard_path(args.out, args.raw, f), size, labels) for f in files
            if not shard_path(args.out, args.raw, f).exists()]
    log.info("%d files, %d already prepared, %d to do", len(files), len(files) - len(todo), len(todo))
    failed, n_slices, t0 = [], 0, time.time()
    with mp.get_context("spawn").Pool(max(1, args.workers)) as pool:
        for i, (src, n, err) in enumerate(pool.imap_unordered(_job, todo), 1):
            if err:
                failed.append((src, err))
                log.warning("[%d/%d] %s FAILED: %s", i, len(todo), Path(src).name, err)
            else:
                n_slices += n
                log.info("[%d/%d] %s: %d slices", i, len(todo), Path(src).name, n)
    log.info("done in %.0f s: %d slices from %d files, %d failed", time.time() - t0, n_slices,
             len(todo) - len(failed), len(failed))
    for src, err in failed:
        log.error("failed: %s: %s", src, err)
    from contextmri_core.io.models.shard_manifest import write_manifest

    log.info("manifest: %s", write_manifest(args.out))
    return 1 if failed else 0


def summary_text(directory: Path, doc: dict) -> str:
    """Human-readable totals of a shard-folder manifest."""
    t = doc["totals"]

    def counts(d: dict) -> str:
        return " | ".join(f"{k}: {v}" for k, v in d.items()) or "-"

    def span(r: dict) -> str:
        if r["min"] is None:
            return f"unknown for all {r['missing_slices']} slices"
        return (f"{r['min']:.3g} .. {r['max']:.3g} (median {r['median']:.3g})"
                + (f", unknown for {r['missing_slices']} slices" if r["missing_slices"] else ""))

    lines = [f"{directory}: {t['slices']} slices in {t['shards']} shards"
             f" ({len(doc.get('unreadable', []))} unreadable)",
             f"  matrix sizes:         {counts(t['sizes'])}",
             f"  anatomies:            {counts(t['anatomies'])}",
             f"  contrasts:            {counts(t['contrasts'])}",
             f"  planes:               {counts(t['planes'])}",
             f"  pixel spacing (mm):   {span(t['pixel_spacing_mm'])}",
             f"  slice thickness (mm): {span(t['slice_thickness_mm'])}"]
    lines += [f"  unreadable: {u['file']}: {u['error']}" for u in doc.get("unreadable", [])]
    return "\n".join(lines)


def print_summary(directory: Path) -> int:
    """Print the manifest summary of ``directory`` (built from the headers when it has none)."""
    from contextmri_core.io.models.shard_manifest import build_manifest, read_manifest

    if not directory.is_dir():
        log.error("%s: no such shard folder", directory)
        return 2
    doc = read_manifest(directory) or build_manifest(directory)
    print(summary_text(directory, doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
