"""Dependencies point inward (DESIGN.md §2), checked on every import statement (module level or
inside a function) of the core, the gadgets and the training code; and no import circles.

Each rule is also run on a small bad snippet that it must reject, so a rule cannot go quiet."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "contextmri_core"
#: Libraries that touch files, sockets or wire formats: only ``contextmri_core/io`` imports them.
IO_ONLY = {"h5py", "ismrmrd", "pydicom", "pynetdicom", "gadgetron", "safetensors", "yaml",
           "nibabel", "PIL", "socket", "socketserver", "ssl", "selectors", "fcntl"}
OUTER = {"gadgets", "training"}
#: Where IO_ONLY holds (training/ is an outer application with its own YAML settings files).
IO_CHECKED = {"contextmri_core", "gadgets"}
#: core subpackage -> core subpackages it must not import (``cli`` may import anything).
FORBIDDEN = {
    "data": {"physics", "recon", "synth", "io", "cli", "prior", "sampling", "service"},
    "physics": {"recon", "synth", "io", "cli", "prior", "sampling", "service"},
    "prior": {"recon", "sampling", "synth", "io", "cli", "service"},
    "sampling": {"recon", "synth", "io", "cli", "service"},
    "synth": {"recon", "io", "cli", "service"},
    "recon": {"io", "cli", "synth", "service"},
    "io": {"recon", "cli", "sampling", "synth", "service"},
    "service": {"cli", "synth"},
}
#: outer package -> core subpackages it must not import (they use the service and io layers).
OUTER_FORBIDDEN = {"gadgets": {"cli"}, "training": {"cli"}}


def imported_names(source: str, module: str) -> Iterator[str]:
    """Dotted names every import statement of ``source`` (the text of ``module``) refers to:
    ``from a.b import c`` gives ``a.b`` and ``a.b.c``; relative imports are resolved."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[:-node.level]
                base = ".".join(parent + ([base] if base else []))
            if base:
                yield base
            yield from (f"{base}.{a.name}" if base else a.name for a in node.names)


def violations(source: str, module: str) -> List[str]:
    """Every layering rule ``source`` (the text of dotted ``module``) breaks, one line each."""
    parts = module.split(".")
    top, sub = parts[0], (parts[1] if len(parts) > 2 else None)
    found = []
    for name in imported_names(source, module):
        target = name.split(".")
        if top == "contextmri_core" and target[0] in OUTER:
            found.append(f"{module} imports {name}: the core never imports {target[0]}/")
        if target[0] in IO_ONLY and top in IO_CHECKED and not (top == "contextmri_core"
                                                               and sub == "io"):
            found.append(f"{module} imports {name}: only contextmri_core/io touches files "
                         "and sockets")
        if target[0] == "contextmri_core" and len(target) > 1:
            banned = FORBIDDEN.get(sub, set()) if top == "contextmri_core" else \
                OUTER_FORBIDDEN.get(top, set())
            if target[1] in banned:
                found.append(f"{module} must not import {name} ({sub or top} -> {target[1]})")
    return sorted(set(found))


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("").parts
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


MODULES = sorted(CORE.rglob("*.py"))
OUTER_MODULES = sorted(p for d in OUTER for p in (REPO / d).rglob("*.py"))


def test_the_core_has_modules():
    assert len(MODULES) > 20 and OUTER_MODULES


@pytest.mark.parametrize("path", MODULES + OUTER_MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_inward(path):
    assert violations(path.read_text(), module_name(path)) == []


BAD = [  # (module, source, what the message must name)
    ("contextmri_core.data.header", "import h5py", "only contextmri_core/io"),
    ("contextmri_core.service.server", "import socket", "only contextmri_core/io"),
    ("contextmri_core.cli.serve", "from socket import socket", "only contextmri_core/io"),
    ("gadgets.contextmri", "import ismrmrd", "only contextmri_core/io"),
    ("contextmri_core.recon.stream", "import yaml", "only contextmri_core/io"),
    ("contextmri_core.service.session", "from contextmri_core.cli.replay import run", "-> cli"),
    ("contextmri_core.service.series", "from contextmri_core import cli", "-> cli"),
    ("contextmri_core.io.mrd.stream", "from contextmri_core.service.session import Engine",
     "-> service"),
    ("contextmri_core.io.dicom.pacs", "import contextmri_core.cli.push", "-> cli"),
    ("contextmri_core.io.raw.reader", "from contextmri_core.recon.base import ReconResult",
     "-> recon"),
    ("contextmri_core.io.models.official", "from ...sampling import dds", "-> sampling"),
    ("contextmri_core.recon.stream", "from contextmri_core.service import series", "-> service"),
    ("contextmri_core.recon.base", "def f():\n    from contextmri_core.io.raw import reader",
     "-> io"),
    ("contextmri_core.data.scan", "from contextmri_core.physics.fft import fft2c", "-> physics"),
    ("contextmri_core.prior.model", "from contextmri_core.service.session import Engine",
     "-> service"),
    ("gadgets.contextmri", "from contextmri_core.cli.mrd_session import run_session", "-> cli"),
    ("training.fit", "from contextmri_core.cli import main", "-> cli"),
    ("contextmri_core.synth.scan", "import training.fit", "never imports training"),
    ("contextmri_core.prior.model", "from gadgets import contextmri", "never imports gadgets"),
]
GOOD = [  # the same checker lets the intended directions through
    ("contextmri_core.service.session", "from contextmri_core.recon.stream import recon_stream"),
    ("contextmri_core.service.series", "from contextmri_core.io.dicom.pacs import push"),
    ("contextmri_core.cli.serve", "from contextmri_core.service.server import StreamServer"),
    ("gadgets.contextmri", "from contextmri_core.service.session import run_session\n"
                           "from contextmri_core.io.mrd.stream import header_text"),
    ("contextmri_core.io.mrd.listener", "import socket"),
    ("contextmri_core.io.dicom.pacs", "from pynetdicom import AE"),
]


@pytest.mark.parametrize("module, source, expected", BAD, ids=[f"{m}:{s}" for m, s, _ in BAD])
def test_each_rule_rejects_a_bad_import(module, source, expected):
    found = violations(source, module)
    assert found and any(expected in v for v in found), found


@pytest.mark.parametrize("module, source", GOOD, ids=[m for m, _ in GOOD])
def test_intended_directions_pass(module, source):
    assert violations(source, module) == []


# --- import circles --------------------------------------------------------------------------

def import_graph(sources: Dict[str, str]) -> Dict[str, Set[str]]:
    """module -> the modules of ``sources`` it imports (every import statement: a late import
    inside a function hides a circle, it does not remove it)."""
    graph: Dict[str, Set[str]] = {}
    for module, source in sources.items():
        targets = set()
        for name in imported_names(source, module):
            parts = name.split(".")
            hit = next((".".join(parts[:k]) for k in range(len(parts), 0, -1)
                        if ".".join(parts[:k]) in sources), None)
            if hit is not None and hit != module:
                targets.add(hit)
        graph[module] = targets
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import circle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_no_import_circles_in_the_core():
    sources = {module_name(p): p.read_text() for p in MODULES}
    graph = import_graph(sources)
    assert sum(map(len, graph.values())) > 100  # the graph really was built
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("sources, circle", [
    ({"p.a": "from p.b import x", "p.b": "import p.a"}, ["p.a", "p.b", "p.a"]),
    ({"p.replay": "def run():\n    from p.replay_run import replay",
      "p.replay_run": "from p.replay import output_stems"},
     ["p.replay", "p.replay_run", "p.replay"]),
    ({"p.x": "from . import y", "p.y": "from .z import f", "p.z": "from p.x import g"},
     ["p.x", "p.y", "p.z", "p.x"]),
])
def test_a_circle_is_found(sources, circle):
    assert find_cycle(import_graph(sources)) == circle


def test_a_chain_is_not_a_circle():
    sources = {"p.factory": "from p.clip import Clip\nfrom p.config import Config",
               "p.clip": "from p.config import Config", "p.config": "import dataclasses"}
    assert find_cycle(import_graph(sources)) is None
