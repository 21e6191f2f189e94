"""``contextmri``: one command, one subcommand per job (simulate, info, demo, ...)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

from contextmri_core.errors import ContextMRIError

#: Subcommand name -> module that defines ``register(subparsers)``; imported only when needed.
SUBCOMMANDS = {
    "simulate": "contextmri_core.cli.simulate",
    "info": "contextmri_core.cli.info",
    "demo": "contextmri_core.cli.demo",
    "serve": "contextmri_core.cli.serve",
    "replay": "contextmri_core.cli.replay",
    "push": "contextmri_core.cli.push",
}


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contextmri",
        description="Metadata-conditioned reconstruction of undersampled MRI "
                    "(ISMRMRD / fastMRI .h5 in; images out).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in SUBCOMMANDS.items():
        if only is None or only == name:
            importlib.import_module(module).register(sub)
        else:  # cheap placeholder so --help lists every command
            sub.add_parser(name, help=_help_of(module))
    return parser


def _help_of(module: str) -> str:
    return importlib.import_module(module).HELP


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if a in SUBCOMMANDS), None)
    args = build_parser(only=chosen).parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return int(args.func(args) or 0)
    except ContextMRIError as exc:
        logging.getLogger("contextmri").error("%s", exc)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C outside a command's own handling: one line, no trace
        print(f"contextmri {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
