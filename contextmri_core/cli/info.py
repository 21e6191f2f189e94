"""``contextmri info FILE.h5|FOLDER ...``: what a raw file holds and the prompt of each slice;
``contextmri info --model DIR``: what a model folder is and the settings it runs with (with
files too: the UNet and the prompt that model would use for each slice).

Folders are expanded to their ``*.h5`` files exactly as ``contextmri replay`` does. A file
that cannot be read (corrupt, not MRI, a header asking for an absurd k-space grid) gets one
error line; the others are still shown, and the exit code is then 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from contextmri_core.data.assembly import calibration_rows
from contextmri_core.data.prompt import build_prompt
from contextmri_core.data.scan import RawScan
from contextmri_core.errors import ContextMRIError
from contextmri_core.io.raw.reader import read_scan

HELP = ("show metadata, prompts, matrix, coils, acceleration, ACS and noise of raw .h5 files; "
        "with --model, what a model folder is")


def register(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser("info", help=HELP, description=__doc__)
    parser.add_argument("files", nargs="*", metavar="FILE.h5",
                        help="ISMRMRD v1 or fastMRI .h5 files, or folders of them")
    parser.add_argument("--model", default=None,
                        help="describe this model folder (a contextmri checkpoint, the "
                             "published ContextMRI MRI_checkpoint/ or one UNet folder of it): "
                             "kind, UNets, sample size, encoder, schedule, parameters, settings")
    parser.add_argument("--preset", default="auto",
                        help="with --model: the settings preset to show (auto, paper, contextmri)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list with one object per file")
    parser.add_argument("--anatomy", default=None,
                        help="anatomy for the prompt when the header does not say (e.g. brain)")
    parser.set_defaults(func=run)
    return parser


def summarize(path: str, scan: RawScan) -> Dict[str, Any]:
    """JSON-ready summary of one scan (see ``contextmri info --help``)."""
    first = scan.slices[0]
    slices = [{"slice": sl.metadata.slice_index, "prompt": build_prompt(sl.metadata),
               "acceleration": round(sl.acceleration, 3),
               "acs_lines": int(calibration_rows(sl).sum())} for sl in scan.slices]
    noise = None if scan.noise is None else {
        "acquisitions": scan.noise_acquisitions, "coils": int(scan.noise.shape[0]),
        "samples": int(scan.noise.shape[1])}
    return {
        "file": path,
        "metadata": scan.metadata.to_dict(),
        "matrix": {"encoded": list(scan.encoded_matrix), "recon": list(scan.recon_matrix),
                   "readout_oversampling": scan.readout_oversampling,
                   "fov_mm": list(scan.fov_mm)},
        "coils": {"count": scan.num_coils, "names": list(scan.coil_names)},
        "acceleration": round(first.acceleration, 3),
        "acs_lines": int(calibration_rows(first).sum()),
        "acs_flagged": first.acs_rows is not None and first.acs is not None,
        "noise_scans": noise,
        "slices": slices,
    }


def _format(summary: Dict[str, Any]) -> str:
    meta = {k: v for k, v in summary["metadata"].items() if v not in (None, [], ())}
    mat, coils, noise = summary["matrix"], summary["coils"], summary["noise_scans"]
    acs_how = "flagged" if summary["acs_flagged"] else "detected centre block"
    lines = [
        summary["file"],
        "  metadata:     " + (", ".join(f"{k}={v}" for k, v in meta.items()) or "(none)"),
        f"  matrix:       encoded {mat['encoded'][0]} x {mat['encoded'][1]} (E1 x RO), "
        f"recon {mat['recon'][0]} x {mat['recon'][1]}, readout oversampling "
        f"{mat['readout_oversampling']:g} (removed)",
        f"  coils:        {coils['count']}" + (
            f" ({', '.join(coils['names'])})" if coils["names"] else ""),
        f"  acceleration: {summary['acceleration']:g}",
        f"  ACS lines:    {summary['acs_lines']} ({acs_how})",
        "  noise scans:  " + ("none" if noise is None else
                              f"{noise['acquisitions']} ({noise['coils']} coils x "
                              f"{noise['samples']} samples)"),
    ]
    lines += [f"  slice {s['slice']}: {s['prompt']}" for s in summary["slices"]]
    model = summary.get("model_prompts")
    if model:
        lines.append(f"  with the model ({model['unet']} UNet):")
        lines += [f"  slice {s['slice']}: {s['prompt']}" for s in model["slices"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from contextmri_core.cli.replay import input_files

    if not args.files and not args.model:
        print("contextmri info: error: give FILE.h5 files and/or --model DIR", file=sys.stderr)
        return 2
    card = None
    if args.model:
        from contextmri_core.cli.model_info import format_card, full_card

        card = full_card(args.model, args.preset)
        if not args.json:
            print(format_card(card))
    if not args.files:
        if args.json:
            print(json.dumps(card, indent=2, default=_jsonable))
        return 0
    results: List[Dict[str, Any]] = []
    failed = 0
    for path in map(str, input_files([Path(p) for p in args.files])):
        try:
            scan = read_scan(path, anatomy_override=args.anatomy)
        except (ContextMRIError, MemoryError, OSError) as exc:
            failed += 1
            print(f"contextmri info: error: {exc}", file=sys.stderr)
            results.append({"file": path, "error": str(exc)})
            continue
        results.append(summarize(path, scan))
        if card is not None:
            from contextmri_core.cli.model_info import prompts_for

            results[-1]["model_prompts"] = prompts_for(card, scan)
        if not args.json:
            print(_format(results[-1]))
    if args.json:
        doc: Any = results if card is None else {"model": card, "files": results}
        print(json.dumps(doc, indent=2, default=_jsonable))
    return 2 if failed else 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
