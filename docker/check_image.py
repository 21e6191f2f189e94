"""Build-time check of the contextmri Gadgetron image (run by docker/Dockerfile; exits 1 with
one line per problem, so a broken image fails `docker build` instead of the first scan).

- every ``<external><execute name=MODULE target=TARGET type="python"/>`` in the installed
  Gadgetron configurations imports and TARGET is callable (what ``python -m gadgetron PORT
  MODULE TARGET`` will do);
- the shipped default model is installed with the package (not found via a source tree) and
  loads (skip with --no-load-model);
- the distributions pinned in the pip constraints file are installed at those versions
  (numpy / ismrmrd-python / gadgetron-python of the base image, torch of the build arg);
- the ``contextmri`` command is on PATH.

Stdlib + the installed package only: the tests/ tree is not in the image.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

MODEL_FILES = ("contextmri.yaml", "unet.safetensors", "encoder.safetensors")


def pipeline_problems(config_dir: Path) -> list[str]:
    problems: list[str] = []
    configs = sorted(config_dir.glob("contextmri*.xml"))
    if not configs:
        return [f"no contextmri*.xml in {config_dir}"]
    for path in configs:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            problems.append(f"{path.name}: not XML ({exc})")
            continue
        for execute in root.iter("execute"):
            name, target = execute.get("name"), execute.get("target")
            if execute.get("type") != "python":
                continue
            try:
                module = importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - report any import failure
                problems.append(f"{path.name}: import {name} failed: {exc!r}")
                continue
            if not callable(getattr(module, target or "", None)):
                problems.append(f"{path.name}: {name}.{target} is not callable")
    return problems


def model_problems(load: bool) -> list[str]:
    from contextmri_core.models import DEFAULT_MODEL_DIR

    problems = [f"default model file missing: {DEFAULT_MODEL_DIR / f}" for f in MODEL_FILES
                if not (DEFAULT_MODEL_DIR / f).is_file()]
    package_root = DEFAULT_MODEL_DIR.resolve().parents[2]  # .../contextmri_core/models/default
    if (package_root / "pyproject.toml").is_file():
        problems.append(f"default model found in the source tree {package_root}, not in the "
                        "installed package (cwd or PYTHONPATH shadows site-packages)")
    if load and not problems:
        try:
            from contextmri_core.io.models.checkpoint import load_prior

            load_prior(DEFAULT_MODEL_DIR)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"default model does not load: {exc!r}")
    return problems


def pin_problems(constraints: Path) -> list[str]:
    problems = []
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            problems.append(f"constraint {line!r} is not an exact pin")
            continue
        name, want = (s.strip() for s in line.split("==", 1))
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed (pinned {want})")
            continue
        if have.split("+", 1)[0] != want.split("+", 1)[0]:  # 2.13.0+cpu satisfies ==2.13.0
            problems.append(f"{name} {have} installed, {want} pinned")
    return problems


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-dir", type=Path, required=True)
    ap.add_argument("--constraints", type=Path, default=None)
    ap.add_argument("--no-load-model", action="store_true")
    args = ap.parse_args(argv)

    problems = pipeline_problems(args.config_dir)
    problems += model_problems(load=not args.no_load_model)
    if args.constraints is not None:
        problems += pin_problems(args.constraints)
    if shutil.which("contextmri") is None:
        problems.append("`contextmri` is not on PATH")
    for p in problems:
        print(f"check_image: {p}", file=sys.stderr)
    if not problems:
        versions = {n: _version(n) for n in ("numpy", "ismrmrd", "gadgetron", "torch")}
        print(f"check_image: ok, python {sys.version.split()[0]}, {versions}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
