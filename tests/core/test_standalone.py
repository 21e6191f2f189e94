"""The project stands alone: a clone with nothing beside it passes its tests (issue 13, item 12)."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# a path that climbs out of the repository into a sibling "shared" folder (the pattern and
# its examples are assembled so that this file does not itself name such a path)
SIBLING = "shared"
UP = "../"
OUTSIDE = re.compile(re.escape(UP + SIBLING) + rf"""|parent\s*/\s*["']{SIBLING}["']"""
                     rf"""|["']{SIBLING}["']\s*/\s*["']fixtures""")


def _tracked_code():
    out = subprocess.run(["git", "ls-files", "*.py", "*.sh", "*.yaml", "*.yml", "*.toml", ".ci/*"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / p for p in out if (ROOT / p).is_file()]


def test_no_code_reads_outside_the_repository():
    files = _tracked_code()
    assert len(files) > 50
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if p.name != "test_standalone.py" and OUTSIDE.search(p.read_text(errors="replace"))]
    assert offenders == []


def test_the_pattern_catches_the_old_fixture_path():
    assert OUTSIDE.search(f'Path(__file__).resolve().parents[2].parent / "{SIBLING}" / "fixtures"')
    assert OUTSIDE.search(f"cat {UP}{SIBLING}/fixtures/x.xml")
    assert not OUTSIDE.search('ROOT / "tests" / "fixtures" / "header.xml"')


def test_fixture_is_in_the_repository():
    assert (ROOT / "tests" / "fixtures" / "fastmri_brain_axflair_header.xml").stat().st_size > 1000
