"""Dependencies point inward (DESIGN.md §2): checked on every import statement of the core."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "contextmri_core"
IO_ONLY = {"h5py", "ismrmrd", "pydicom", "pynetdicom", "gadgetron", "safetensors", "yaml"}
OUTER = {"gadgets", "training"}
# subpackage -> core subpackages it must not import
FORBIDDEN = {
    "data": {"physics", "recon", "synth", "io", "cli", "prior", "sampling"},
    "physics": {"recon", "synth", "io", "cli", "prior", "sampling"},
    "prior": {"recon", "sampling", "synth", "io", "cli"},
    "sampling": {"recon", "synth", "io", "cli"},
    "synth": {"recon", "io", "cli"},
    "recon": {"io", "cli", "synth"},
    "io": {"recon", "cli", "sampling"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


MODULES = sorted(CORE.rglob("*.py"))


def test_the_core_has_modules():
    assert len(MODULES) > 20


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_point_inward(path):
    rel = path.relative_to(CORE).parts
    sub = rel[0] if len(rel) > 1 else None
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in OUTER, f"{path.name} imports {name}: the core never imports {top}/"
        if top in IO_ONLY:
            assert sub == "io", f"{path.name} imports {name}: only contextmri_core/io may"
        if top == "contextmri_core" and sub in FORBIDDEN and len(name.split(".")) > 1:
            target = name.split(".")[1]
            assert target not in FORBIDDEN[sub], f"{sub}/{path.name} must not import {name}"
