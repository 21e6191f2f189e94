"""``contextmri push DIR --pacs HOST:PORT:AET``: send the DICOM files of an outbox to a PACS.

DIR is an *outbox*: a private folder of DICOM files waiting for the PACS (one
<SOPInstanceUID>.dcm per image). push sends them with DICOM C-STORE over one association and
deletes each file only after the PACS confirmed it stored it; everything else stays in DIR, so
nothing is lost when the PACS is down: run the same command again later. A round that stores
nothing is retried --retries times, waiting --backoff, 2x, 4x ... seconds in between.
Files in DIR that cannot be sent whole (not DICOM, truncated, an image without pixel data or
with pixel data of the wrong size) are moved to DIR/rejected/ with the reason; they are never
sent. Only one push drains DIR at a time: a second one says that another push holds it.

--enqueue copies DICOM files, or every DICOM file found in folders, into DIR first (the
originals are kept), so one command sends a results folder. --echo-only just checks that the
PACS answers (DICOM C-ECHO) and sends nothing.

Prints one line: "sent N, failed M, still queued K in DIR". Exit status: 0 when DIR is empty
afterwards, 1 when files remain (or were rejected: look in DIR/rejected/), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from contextmri_core.errors import ConfigError

HELP = "send DICOM files to a PACS through an outbox folder (C-STORE; failures stay queued)"
EPILOG = """examples:
  # send a results folder (copied into the outbox first; originals kept)
  contextmri push ~/pacs-outbox --enqueue results/dicom --pacs pacs.example.org:104:ORTHANC

  # later, send whatever is still queued (e.g. after a PACS outage)
  contextmri push ~/pacs-outbox --pacs pacs.example.org:104:ORTHANC

  # only check that the PACS answers, with our AE title as the PACS knows it
  contextmri push ~/pacs-outbox --pacs pacs.example.org:104:ORTHANC --calling-aet RECON1 --echo-only

Put DIR before --enqueue (--enqueue takes every path that follows it)."""


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number >= 0")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: use seconds >= 0")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use seconds > 0")
    return value


def register(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser("push", help=HELP, description=__doc__.split("\n", 2)[2],
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outbox", type=Path, metavar="DIR",
                        help="outbox folder of DICOM files to send (created by --enqueue)")
    parser.add_argument("--pacs", required=True, metavar="HOST:PORT:AET",
                        help="the PACS: host, DICOM port and its AE title (called AET)")
    parser.add_argument("--calling-aet", default="CONTEXTMRI", metavar="AET",
                        help="our AE title, as configured on the PACS (default CONTEXTMRI)")
    parser.add_argument("--enqueue", nargs="+", type=Path, default=[], metavar="PATH",
                        help="copy these DICOM files / folders (recursively) into DIR first")
    parser.add_argument("--retries", type=_count, default=3, metavar="N",
                        help="retries of a round that stored nothing (default 3)")
    parser.add_argument("--backoff", type=_seconds, default=1.0, metavar="S",
                        help="seconds before the first retry, doubled each time (default 1)")
    parser.add_argument("--timeout", type=_positive_seconds, default=10.0, metavar="S",
                        help="seconds to wait for the PACS at each step (default 10)")
    parser.add_argument("--echo-only", action="store_true",
                        help="only check that the PACS answers (C-ECHO); send nothing")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from contextmri_core.io.dicom.pacs import Outbox, PacsTarget, echo, find_dicom_files, push

    target = replace(PacsTarget.parse(args.pacs, calling_aet=args.calling_aet),
                     timeout_s=args.timeout)
    if args.echo_only:
        if args.enqueue:
            raise ConfigError("--echo-only sends nothing: leave out --enqueue")
        ok = echo(target)
        print(f"C-ECHO {target}: {'ok' if ok else 'no answer'}")
        return 0 if ok else 1
    if not args.enqueue and not args.outbox.is_dir():
        raise ConfigError(f"outbox {args.outbox} does not exist (fill it with --enqueue PATH)")
    outbox = Outbox(args.outbox)
    if args.enqueue:
        outbox.enqueue(find_dicom_files(args.enqueue))
    report = push(outbox, target, retries=args.retries, backoff_s=args.backoff)
    if report.locked:
        print(f"another push holds {args.outbox} (its lock): nothing sent; "
              f"{len(report.remaining)} instances stay queued, try again when it has finished")
        sys.stdout.flush()
        return 1
    line = (f"sent {report.sent}, failed {report.failed}, still queued {len(report.remaining)} "
            f"in {args.outbox}")
    if report.rejected:
        line += (f" ({len(report.rejected)} rejected: not DICOM or damaged, moved to "
                 f"{outbox.rejected_dir} with the reason)")
    print(line)
    sys.stdout.flush()
    return 0 if report.ok and not report.rejected else 1
