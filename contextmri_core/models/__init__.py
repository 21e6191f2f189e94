"""Models shipped with the package. ``default/`` is the small prior trained on the synthetic
multi-contrast brain set (see ``default/contextmri.yaml`` -> ``info`` for the exact command,
data seed, steps and wall time); the product loads it when no model is named."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
