"""Tiles with boxes drawn on them, laid out as contact sheets (PNG) that GitHub shows inline.

Squirrels on webcam tiles are often 15-50 px: a box drawn over the object hides it and a
thumbnail shrinks it to a few pixels. So outlines go *around* the box (the object stays
visible), confidences sit in a label above it, and a cell can carry an enlarged crop next to
the whole tile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont, ImageOps

from acorn.runtime.atomic import atomic_path

CORNERS = ["x1", "y1", "x2", "y2"]
PREDICTED = (255, 214, 0)  # yellow: reads on grass, bark, sky and at night
MISSED = (0, 224, 255)  # cyan: truth the model did not find
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)
GAP = 6  # pixels between cells of a sheet


def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font: no font file to find, nothing to download."""
    return ImageFont.load_default(size=size)


def draw_boxes(
    image: Image.Image, boxes: pd.DataFrame, color: tuple[int, int, int] = PREDICTED, width: int = 2
) -> Image.Image:
    """A copy of ``image`` with each box (pixel ``x1..y2``) outlined just outside its edges.

    The outline is ``width`` pixels wide and lies entirely outside the box, so a small object is
    never painted over. With a ``confidence`` column, each box gets its confidence in a label at
    one of its corners, the most confident first, placed inside the image where it covers no other
    label and not its own box.
    """
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    corners = boxes[CORNERS].to_numpy(dtype=np.float64).reshape(-1, 4)
    left, top = (np.floor(corners[:, :2]).astype(int) - width).T
    right, bottom = (np.ceil(corners[:, 2:]).astype(int) + width - 1).T
    for box in zip(left, top, right, bottom, strict=True):
        draw.rectangle(box, outline=color, width=width)
    if "confidence" not in boxes:
        return out
    label_font = font(max(11, 5 * width + 2))
    taken: list[tuple[int, int, int, int]] = []
    confidences = boxes["confidence"].to_numpy(dtype=np.float64)
    for i in np.argsort(-confidences, kind="stable"):
        text = f"{confidences[i]:.2f}"
        tl, tt, tr, tb = draw.textbbox((0, 0), text, font=label_font)
        w, h = tr - tl + 4, tb - tt + 4
        x, y = _free_spot(
            [(left[i], top[i] - h), (left[i], bottom[i] + 1), (right[i] - w + 1, top[i] - h)],
            (w, h),
            out.size,
            [*taken, (left[i] + width, top[i] + width, right[i] - width + 1, bottom[i] - width + 1)],
        )
        taken.append((x, y, x + w, y + h))
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=color)
        draw.text((x + 2 - tl, y + 2 - tt), text, fill=(0, 0, 0), font=label_font)
    return out


def _free_spot(
    candidates: list[tuple[int, int]],
    size: tuple[int, int],
    image_size: tuple[int, int],
    taken: list[tuple[int, int, int, int]],
) -> tuple[int, int]:
    """The first candidate corner, moved inside the image, where a ``size`` label covers nothing in
    ``taken`` (labels placed, the box's own inside); failing that, the first, moved down until it is
    clear (or the image ends)."""
    w, h = size

    def clear(x: int, y: int) -> bool:
        return not any(x < r and a < x + w and y < b and c < y + h for a, c, r, b in taken)

    inside = [(min(max(x, 0), image_size[0] - w), min(max(y, 0), image_size[1] - h)) for x, y in candidates]
    for x, y in inside:
        if clear(x, y):
            return x, y
    x, y = inside[0]
    while not clear(x, y) and y + 2 * h <= image_size[1]:
        y += h
    return x, y
    x, y = (inside or candidates)[0]
    while not clear(x, y) and y + 2 * h <= image_size[1]:
        y += h
    return x, y


def scale_boxes(boxes: pd.DataFrame, factor: float, dx: float = 0.0, dy: float = 0.0) -> pd.DataFrame:
    """Boxes in the coordinates of a resized (``factor``) and shifted (crop origin ``dx, dy``) image."""
    moved = boxes.copy()
    moved[["x1", "x2"]] = (boxes[["x1", "x2"]] - dx) * factor
    moved[["y1", "y2"]] = (boxes[["y1", "y2"]] - dy) * factor
    return moved


DARK = 96  # a tile whose 99th percentile of luminance is below this is brightened for viewing


def viewable(image: Image.Image) -> Image.Image:
    """A dark (night) tile stretched to the full luminance range, hues kept, so that what is in it
    can be made out; any other tile unchanged (a stretched day tile only looks garish)."""
    if np.percentile(np.asarray(image.convert("L")), 99) >= DARK:
        return image
    return ImageOps.autocontrast(image, cutoff=0.5, preserve_tone=True)


Layers = Sequence[tuple[pd.DataFrame, tuple[int, int, int]]]  # (boxes, colour), drawn in order


def thumbnail(image: Image.Image, width: int, layers: Layers = ()) -> Image.Image:
    """``image`` resized to ``width`` (and brightened if dark), each layer's boxes drawn at that size
    (lines stay crisp)."""
    factor = width / image.width
    size = (width, max(1, round(image.height * factor)))
    out = viewable(image.convert("RGB").resize(size, Image.Resampling.LANCZOS))
    for boxes, color in layers:
        out = draw_boxes(out, scale_boxes(boxes, factor), color)
    return out


def zoom_window(box: pd.Series, image_size: tuple[int, int], context: float = 2.5) -> tuple[int, int, int]:
    """(left, top, side) of a square ``context`` times the box's longer side, centred on it and
    kept inside the image (smaller than the box only where the image is)."""
    width, height = image_size
    side = round(min(max(box["x2"] - box["x1"], box["y2"] - box["y1"], 16.0) * context, width, height))
    cx, cy = (box["x1"] + box["x2"]) / 2, (box["y1"] + box["y2"]) / 2
    left = round(min(max(cx - side / 2, 0), width - side))
    top = round(min(max(cy - side / 2, 0), height - side))
    return left, top, side


def zoom(image: Image.Image, window: tuple[int, int, int], size: int, layers: Layers = ()) -> Image.Image:
    """The square ``window`` of ``image`` enlarged to ``size`` (and brightened if dark), with each
    layer's boxes drawn on it."""
    left, top, side = window
    crop = viewable(image.crop((left, top, left + side, top + side)).convert("RGB"))
    factor = size / side
    out = crop.resize((size, size), Image.Resampling.LANCZOS)
    for boxes, color in layers:
        out = draw_boxes(out, scale_boxes(boxes, factor, left, top), color)
    return out


def side_by_side(*images: Image.Image) -> Image.Image:
    """Images in a row, top-aligned: a whole tile next to its enlarged crop."""
    height = max(i.height for i in images)
    row = Image.new("RGB", (sum(i.width for i in images) + GAP * (len(images) - 1), height), BACKGROUND)
    x = 0
    for i in images:
        row.paste(i, (x, 0))
        x += i.width + GAP
    return row


def contact_sheet(cells: Sequence[Image.Image], captions: Sequence[str], columns: int) -> Image.Image:
    """Cells in a grid, ``columns`` wide, each with its caption underneath."""
    if not cells or len(cells) != len(captions):
        raise ValueError(f"{len(cells)} cells and {len(captions)} captions: need as many, at least one")
    caption_font = font(14)
    line = caption_font.getbbox("Ag")[3] + 6
    cell_w = max(c.width for c in cells)
    cell_h = max(c.height for c in cells) + line
    columns = max(1, min(columns, len(cells)))
    rows = math.ceil(len(cells) / columns)
    sheet = Image.new(
        "RGB", (columns * cell_w + (columns + 1) * GAP, rows * cell_h + (rows + 1) * GAP), BACKGROUND
    )
    draw = ImageDraw.Draw(sheet)
    for i, (cell, caption) in enumerate(zip(cells, captions, strict=True)):
        x = GAP + (i % columns) * (cell_w + GAP)
        y = GAP + (i // columns) * (cell_h + GAP)
        sheet.paste(cell, (x, y))
        draw.text((x + 2, y + cell.height + 3), caption, fill=TEXT, font=caption_font)
    return sheet


def save_png(image: Image.Image, path: str | os.PathLike[str]) -> None:
    """Written atomically; quantised to 128 colours (a quarter of the bytes of full colour on noisy
    webcam tiles, no visible loss at sheet size) so that a sheet kept in git per cycle stays small."""
    with atomic_path(path) as tmp:
        image.quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
            tmp, format="PNG", optimize=True
        )
