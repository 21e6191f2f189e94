"""Print pip constraints that keep the Gadgetron image's own numpy, ismrmrd-python and
gadgetron-python (Gadgetron and gadgetron-python were built and tested against them), plus any
extra constraints given as arguments (e.g. ``torch==2.13.0``).

Run by docker/Dockerfile with the conda env's python; stdlib only (Python >= 3.8).
Exits 1 (and says why) if one of the kept distributions is not installed: then the base image
is not the Gadgetron runtime image this Dockerfile was written for.
"""

from __future__ import annotations

import sys
from importlib import metadata

KEEP = ("numpy", "ismrmrd", "gadgetron")


def constraints(extra: list[str]) -> list[str]:
    lines = []
    for name in KEEP:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise SystemExit(f"runtime_constraints: {name} is not installed in {sys.prefix}; "
                             "is the base image the Gadgetron runtime image?")
    return lines + list(extra)


def main(argv: list[str]) -> int:
    print("\n".join(constraints(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
