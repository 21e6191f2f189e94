"""PNG previews: a contact sheet of magnitude images (rows = slices, columns = methods)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import numpy as np


def _to_uint8(img: np.ndarray, vmax: float) -> np.ndarray:
    return (np.clip(np.abs(img) / max(vmax, 1e-12), 0, 1) * 255).astype(np.uint8)


def contact_sheet(
    path: Union[str, Path], columns: Mapping[str, np.ndarray], percentile: float = 99.5
) -> Path:
    """Write ``columns`` (name -> ``(S, ny, nx)`` images) side by side, one row per slice; each
    column is windowed to its own ``percentile`` of magnitude. Returns the path."""
    from PIL import Image, ImageDraw

    names = list(columns)
    stacks = [np.abs(np.asarray(columns[n])) for n in names]
    s, ny, nx = stacks[0].shape
    label_h = 14
    sheet = np.zeros((label_h + s * ny, len(names) * nx), dtype=np.uint8)
    for j, stack in enumerate(stacks):
        vmax = float(np.percentile(stack, percentile))
        for i in range(s):
            sheet[label_h + i * ny:label_h + (i + 1) * ny, j * nx:(j + 1) * nx] = _to_uint8(stack[i], vmax)
    image = Image.fromarray(sheet)  # uint8 2D -> mode "L"
    draw = ImageDraw.Draw(image)
    for j, name in enumerate(names):
        draw.text((j * nx + 3, 1), name, fill=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def grid_sheet(path: Union[str, Path], stack: np.ndarray, title: str = "",
               percentile: float = 99.5) -> Path:
    """Write the slices ``(S, ny, nx)`` of one series as a near-square grid with one shared
    window (so slices stay comparable), ``title`` on top. Returns the path."""
    from PIL import Image, ImageDraw

    stack = np.abs(np.asarray(stack))
    s, ny, nx = stack.shape
    cols = int(np.ceil(np.sqrt(s)))
    rows = int(np.ceil(s / cols))
    label_h = 14 if title else 0
    vmax = float(np.percentile(stack, percentile))
    sheet = np.zeros((label_h + rows * ny, cols * nx), dtype=np.uint8)
    for k in range(s):
        r, c = divmod(k, cols)
        sheet[label_h + r * ny:label_h + (r + 1) * ny, c * nx:(c + 1) * nx] = _to_uint8(stack[k], vmax)
    image = Image.fromarray(sheet)
    if title:
        ImageDraw.Draw(image).text((3, 1), title, fill=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
