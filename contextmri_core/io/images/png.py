"""PNG previews: a contact sheet of magnitude images (rows = slices, columns = methods), a
grid of one series, and line charts (training loss curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, Tuple, Union

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


MIN_WIDTH_PX = 256  # small matrices are enlarged (nearest neighbour) so the title fits
_CHAR_PX, _LINE_PX = 6, 12  # PIL's default bitmap font


def _title_lines(title: str, width_px: int) -> list:
    """``title`` wrapped at spaces into lines that fit ``width_px``."""
    per_line = max(width_px // _CHAR_PX - 1, 8)
    lines, line = [], ""
    for word in title.split(" "):
        if line and len(line) + 1 + len(word) > per_line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + ([line] if line else [])


def grid_sheet(path: Union[str, Path], stack: np.ndarray, title: str = "",
               percentile: float = 99.5) -> Path:
    """Write the slices ``(S, ny, nx)`` of one series as a near-square grid with one shared
    window (so slices stay comparable), ``title`` on top (wrapped, also stored as the PNG
    ``Title`` text). Sheets narrower than ``MIN_WIDTH_PX`` are enlarged. Returns the path."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    stack = np.abs(np.asarray(stack))
    s, ny, nx = stack.shape
    cols = int(np.ceil(np.sqrt(s)))
    rows = int(np.ceil(s / cols))
    zoom = max(1, int(np.ceil(MIN_WIDTH_PX / (cols * nx))))
    vmax = float(np.percentile(stack, percentile))
    grid = np.zeros((rows * ny, cols * nx), dtype=np.uint8)
    for k in range(s):
        r, c = divmod(k, cols)
        grid[r * ny:(r + 1) * ny, c * nx:(c + 1) * nx] = _to_uint8(stack[k], vmax)
    grid = np.kron(grid, np.ones((zoom, zoom), dtype=np.uint8))
    lines = _title_lines(title, grid.shape[1]) if title else []
    label_h = _LINE_PX * len(lines) + (2 if lines else 0)
    sheet = np.zeros((label_h + grid.shape[0], grid.shape[1]), dtype=np.uint8)
    sheet[label_h:] = grid
    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((3, 1 + i * _LINE_PX), line, fill=255)
    info = PngInfo()
    if title:
        info.add_text("Title", title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, pnginfo=info)
    return path


_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def line_chart(path: Union[str, Path], series: Mapping[str, Tuple[Sequence[float], Sequence[float]]],
               title: str = "", log_y: bool = True, size: Tuple[int, int] = (720, 420)) -> Path:
    """Write curves ``name -> (x values, y values)`` on shared axes (log y: non-positive values
    are left out), with a legend and the axis ranges printed. Returns the path."""
    from PIL import Image, ImageDraw

    def ty(v: float) -> float:
        return float(np.log10(v)) if log_y else float(v)

    pts = {n: [(float(x), ty(y)) for x, y in zip(*xy) if np.isfinite(y) and (y > 0 or not log_y)]
           for n, xy in series.items()}
    allp = [p for v in pts.values() for p in v] or [(0.0, 0.0)]
    x0, x1 = min(p[0] for p in allp), max(p[0] for p in allp)
    y0, y1 = min(p[1] for p in allp), max(p[1] for p in allp)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    w, h = size
    left, right, top, bottom = 60, 10, 24, 30
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))

    def xy(p: Tuple[float, float]) -> Tuple[float, float]:
        return (left + (p[0] - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (p[1] - y0) / (y1 - y0) * (h - top - bottom))

    for k, (name, v) in enumerate(pts.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        if len(v) > 1:
            draw.line([xy(p) for p in v], fill=colour, width=2)
        for p in v[-1:] if len(v) > 1 else v:
            cx, cy = xy(p)
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        draw.text((left + 8, top + 6 + 12 * k), name, fill=colour)
    lab = (lambda v: f"{10 ** v:.3g}") if log_y else (lambda v: f"{v:.3g}")
    draw.text((2, top), lab(y1), fill=(0, 0, 0))
    draw.text((2, h - bottom - 10), lab(y0), fill=(0, 0, 0))
    draw.text((left, h - bottom + 4), f"{x0:g}", fill=(0, 0, 0))
    draw.text((w - right - 60, h - bottom + 4), f"{x1:g}", fill=(0, 0, 0))
    draw.text((left, 4), title + ("  (log scale)" if log_y else ""), fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
