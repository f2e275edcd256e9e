"""Deterministic synthetic data for the squirrel demo: 4K backyard webcam frames and close-up "web photos".

The demo has to reproduce the real failure without downloads: a detector trained on large, centred,
well-lit squirrels (the close-up set) misses the small, dim, rained-on, blurred and half-hidden squirrels
of a backyard webcam (the webcam set). Both sets share one procedural squirrel so the only gap between
them is the domain, not the animal. Everything is PIL + numpy; every image draws from its own
``numpy`` generator seeded by ``(seed, index)``, so a file's bytes depend only on the arguments and its
index (not on ``n_frames``, the process count or global random state).

Output is a YOLO folder: ``images/<id>.jpg``, ``labels/<id>.txt`` (``0 cx cy w h``, normalised; an
empty file for an image without squirrels), ``classes.txt`` and ``metadata.csv`` (one row per image).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from tqdm import tqdm

from acorn.runtime.atomic import write_bytes, write_csv, write_text

CLASSES = ("squirrel",)
METADATA_COLUMNS = ["frame_id", "condition", "rain", "blur", "occluded", "n_squirrels"]
CONDITIONS = ("day", "dusk", "night")
JPEG_QUALITY = 90

# How often the hard cases occur in the webcam set (a real backyard: mostly easy, rarely hard).
CONDITION_P = (0.70, 0.18, 0.12)
P_RAIN = 0.10
P_BLUR = 0.10
P_OCCLUDED = 0.15  # per squirrel
P_DISTRACTORS = 0.40
N_SQUIRREL_P = (0.25, 0.10, 0.10, 0.15, 0.15, 0.10, 0.10, 0.05)  # 0..7: a feeder draws a crowd

# Squirrel heights in a 2160-high frame; scaled with the frame height for smaller test frames.
MIN_SQUIRREL_PX = 12.0
MAX_SQUIRREL_PX = 300.0
ALPHA_BOX_THRESHOLD = 96  # a sprite pixel at least this opaque counts as squirrel for the box

# Domain tags keep the random streams of layouts, webcam frames and close-ups apart.
_LAYOUT_STREAM, _WEBCAM_STREAM, _CLOSEUP_STREAM = 1, 2, 3

RGB = tuple[int, int, int]
Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------------------------- helpers


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 40) -> list[tuple]:
    """Polygon of a rotated ellipse (PIL's ellipse cannot rotate)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    a = math.radians(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    xs = cx + x * math.cos(a) - y * math.sin(a)
    ys = cy + x * math.sin(a) + y * math.cos(a)
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _jitter(rng: np.random.Generator, colour: Sequence[float], amount: float) -> RGB:
    c = np.asarray(colour, dtype=float) + rng.uniform(-amount, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _scale(colour: Sequence[float], f: float) -> RGB:
    return tuple(int(min(255, max(0, round(c * f)))) for c in colour)  # type: ignore[return-value]


def _bezier(p: np.ndarray, n: int) -> np.ndarray:
    """Points on the cubic Bezier with control points ``p`` (4 x 2)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t**2 * p[2] + t**3 * p[3]


def _alpha_box(alpha: np.ndarray, threshold: int = ALPHA_BOX_THRESHOLD) -> tuple[int, int, int, int] | None:
    """Tight pixel box (x0, y0, x1, y1), x1/y1 exclusive, of the pixels at least ``threshold`` opaque."""
    mask = alpha >= threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _noise(img: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    """Add grey sensor noise cheaply: random bytes mapped through a Gaussian-ish table, added in C."""
    if sigma <= 0:
        return img
    u = (np.arange(256) + 0.5) / 256.0
    table = 128 + sigma * math.sqrt(3.0) * (2 * u - 1)  # uniform with standard deviation ``sigma``
    lut = np.clip(np.round(table), 0, 255).astype(np.uint8).tolist()
    n = Image.frombytes("L", img.size, rng.bytes(img.size[0] * img.size[1])).point(lut)
    if img.mode == "RGB":
        n = Image.merge("RGB", (n, n, n))
    return ImageChops.add(img, n, 1.0, -128)


def _encode_jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _label_text(boxes: Sequence[Box], width: int, height: int) -> str:
    """YOLO lines ``0 cx cy w h`` for pixel boxes; the empty string when there are none."""
    lines = []
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        w, h = (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"0 {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def _clip_box(box: Box, width: int, height: int) -> Box | None:
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


# ------------------------------------------------------------------------------------------ squirrel

_FUR = {
    "grey": (128, 126, 120),
    "brown": (118, 84, 54),
    "red": (160, 84, 42),
}
_CREAM = (228, 218, 198)


@dataclass
class Sprite:
    """An RGBA squirrel (or distractor) ready to paste, and its tight box inside the sprite."""

    image: Image.Image
    box: tuple[int, int, int, int]


def _draw_squirrel_shape(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    u: float,
    ox: float,
    oy: float,
    pose: str,
    fur: RGB,
    eye: RGB,
) -> None:
    """Draw a right-facing squirrel in unit coordinates (about 1 unit tall) scaled by ``u`` pixels."""

    def p(x: float, y: float) -> tuple[float, float]:
        return (ox + x * u, oy + y * u)

    def ell(cx: float, cy: float, rx: float, ry: float, ang: float, colour: RGB) -> None:
        draw.polygon(_ellipse(ox + cx * u, oy + cy * u, rx * u, ry * u, ang), fill=colour)

    belly = _mix(fur, _CREAM, 0.65)
    fringe = _mix(fur, (215, 210, 200), 0.35)
    dark = _scale(fur, 0.6)
    j = lambda s: float(rng.uniform(-s, s))  # noqa: E731  small shape jitter

    if pose == "sit":
        tail = np.array(
            [
                [0.52, 1.0],
                [0.0 + j(0.05), 1.05],
                [-0.1 + j(0.08), 0.25 + j(0.08)],
                [0.3 + j(0.08), 0.05 + j(0.05)],
            ]
        )
        body, body_r, body_a = (0.66, 0.74), (0.19, 0.27), -12 + j(6)
        head, head_r = (0.84 + j(0.02), 0.4 + j(0.03)), (0.14, 0.12)
    else:  # "run"
        tail = np.array(
            [
                [0.38, 0.58],
                [0.12, 0.5 + j(0.05)],
                [-0.05 + j(0.05), 0.55 + j(0.1)],
                [-0.15 + j(0.05), 0.22 + j(0.1)],
            ]
        )
        body, body_r, body_a = (0.63, 0.6), (0.3, 0.14), -6 + j(6)
        head, head_r = (0.98, 0.5 + j(0.04)), (0.13, 0.105)

    # Bushy tail: a light fringe of circles along a curve, a darker core on top.
    pts = _bezier(tail, 36)
    t = np.linspace(0.0, 1.0, len(pts))
    radius = 0.05 + 0.06 * t + 0.09 * np.sin(np.pi * t) ** 0.7
    for (x, y), r in zip(pts, radius, strict=True):
        draw.ellipse([ox + (x - r) * u, oy + (y - r) * u, ox + (x + r) * u, oy + (y + r) * u], fill=fringe)
    for (x, y), r in zip(pts, radius * 0.72, strict=True):
        draw.ellipse([ox + (x - r) * u, oy + (y - r) * u, ox + (x + r) * u, oy + (y + r) * u], fill=fur)

    if pose == "sit":
        ell(0.6, 0.97, 0.16, 0.12, -10, dark)  # haunch shadow
        ell(body[0], body[1], body_r[0], body_r[1], body_a, fur)
        ell(0.76, 0.8, 0.09, 0.19, -12, belly)
        ell(0.62, 0.93, 0.15, 0.11, -10, fur)  # haunch
        ell(0.76, 1.04, 0.13, 0.035, 0, dark)  # hind foot
        ell(0.86, 0.66, 0.04, 0.065, 20, dark)  # front paws held up
        ell(0.9, 0.68, 0.035, 0.06, 25, fur)
    else:
        ell(0.38, 0.78, 0.12, 0.035, 35, dark)  # hind leg stretched back
        ell(0.9, 0.74, 0.035, 0.1, -25, dark)  # front legs reaching
        ell(0.82, 0.76, 0.035, 0.1, 20, fur)
        ell(body[0], body[1], body_r[0], body_r[1], body_a, fur)
        ell(0.68, 0.68, 0.22, 0.06, body_a, belly)
        ell(0.45, 0.63, 0.14, 0.13, 0, fur)  # haunch
        ell(0.5, 0.76, 0.1, 0.035, -30, dark)  # hind foot

    hx, hy = head
    draw.polygon(
        [p(hx - 0.1, hy - 0.04), p(hx - 0.08, hy - 0.2), p(hx - 0.01, hy - 0.07)], fill=dark
    )  # far ear
    ell(hx, hy, head_r[0], head_r[1], 8, fur)
    ell(hx + 0.12, hy + 0.04, 0.075, 0.055, 12, _mix(fur, belly, 0.4))  # snout
    draw.polygon([p(hx - 0.06, hy - 0.05), p(hx - 0.03, hy - 0.22), p(hx + 0.03, hy - 0.08)], fill=fur)  # ear
    ell(hx + 0.19, hy + 0.035, 0.018, 0.016, 0, (30, 24, 22))  # nose
    ell(hx + 0.06, hy - 0.015, 0.026, 0.028, 0, eye)  # eye


def squirrel_sprite(
    rng: np.random.Generator,
    height_px: float,
    *,
    ir_eyes: bool = False,
    motion: float = 0.0,
    max_rotation: float = 18.0,
    longest_side: bool = False,
) -> Sprite:
    """One squirrel of about ``height_px`` box height (or longest side), random fur, pose, facing, rotation.

    Drawn at a higher resolution and shrunk, so a 12 px squirrel is still a soft squirrel-shaped blob
    rather than a jagged one. ``motion`` smears it horizontally by that fraction of its width (a running
    squirrel under a slow webcam shutter). The box is tight around the opaque pixels: body, head, tail.
    """
    kind = str(rng.choice(list(_FUR), p=[0.45, 0.35, 0.2]))
    fur = _jitter(rng, _scale(_FUR[kind], float(rng.uniform(0.8, 1.15))), 12)
    eye = (235, 235, 235) if ir_eyes else (18, 14, 12)
    pose = "sit" if rng.random() < 0.5 else "run"
    u = float(np.clip(height_px * 1.3 + 40, 64, 900))
    canvas = Image.new("RGBA", (int(2.1 * u), int(1.8 * u)), (*fur, 0))
    _draw_squirrel_shape(ImageDraw.Draw(canvas), rng, u, 0.45 * u, 0.35 * u, pose, fur, eye)

    # Fur texture and top-lit shading, on the full-resolution canvas before it is shrunk.
    arr = np.asarray(canvas).astype(np.float32)
    h = arr.shape[0]
    shade = np.linspace(0.82, 1.08, h, dtype=np.float32)[:, None, None]
    texture = 1.0 + 0.08 * (rng.random((h, arr.shape[1], 1), dtype=np.float32) - 0.5) * 2
    arr[..., :3] = np.clip(arr[..., :3] * shade * texture, 0, 255)
    sprite = Image.fromarray(arr.astype(np.uint8), "RGBA")

    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    sprite = sprite.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    sprite = sprite.crop(sprite.getchannel("A").getbbox())
    scale = height_px / (max(sprite.size) if longest_side else sprite.height)
    size = (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale)))
    sprite = sprite.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    if motion > 0:
        sprite = _motion_blur(sprite, max(2, round(motion * sprite.width)))
    box = _alpha_box(np.asarray(sprite.getchannel("A")))
    if box is None:  # a sub-pixel squirrel: everything is below the threshold, keep the faint blob
        box = _alpha_box(np.asarray(sprite.getchannel("A")), 1) or (0, 0, sprite.width, sprite.height)
    return Sprite(sprite, box)


def _motion_blur(sprite: Image.Image, length: int) -> Image.Image:
    """Average ``length`` horizontally shifted copies (premultiplied alpha), widening the sprite."""
    a = np.asarray(sprite).astype(np.float32)
    a[..., :3] *= a[..., 3:4] / 255.0
    h, w, _ = a.shape
    out = np.zeros((h, w + length - 1, 4), np.float32)
    for k in range(length):
        out[:, k : k + w] += a
    out /= length
    rgb = out[..., :3] * 255.0 / np.maximum(out[..., 3:4], 1e-3)
    out[..., :3] = np.clip(rgb, 0, 255)
    return Image.fromarray(np.round(out).astype(np.uint8), "RGBA")


def _paste(img: Image.Image, sprite: Sprite, x: int, y: int) -> Box | None:
    """Paste at top-left (x, y); returns the squirrel's box in frame pixels, clipped (None if gone)."""
    img.paste(sprite.image, (x, y), sprite.image)
    bx0, by0, bx1, by1 = sprite.box
    return _clip_box((x + bx0, y + by0, x + bx1, y + by1), img.width, img.height)


# ---------------------------------------------------------------------------------------- backyard


def _layouts(seed: int) -> list[dict[str, Any]]:
    """Three fixed backyard "cameras" for a seed; each frame picks one, so the scene feels like one place."""
    rng = np.random.default_rng([_LAYOUT_STREAM, seed])
    layouts = []
    for _ in range(3):
        sky = float(rng.uniform(0.1, 0.26))
        fence_top = sky + float(rng.uniform(0.06, 0.14))
        fence_bottom = fence_top + float(rng.uniform(0.09, 0.16))
        layouts.append(
            {
                "sky": sky,
                "fence_top": fence_top,
                "fence_bottom": fence_bottom,
                "fence_colour": _jitter(
                    rng, [(130, 96, 64), (150, 140, 128), (205, 200, 190)][rng.integers(3)], 15
                ),
                "slat": float(rng.uniform(0.018, 0.032)),
                "trees": [
                    (float(rng.uniform(0, 1)), float(rng.uniform(0.08, 0.18)), _jitter(rng, (48, 88, 42), 18))
                    for _ in range(int(rng.integers(2, 6)))
                ],
                "bushes": [
                    (
                        float(rng.uniform(0, 1)),
                        float(rng.uniform(0.05, 0.12)),
                        float(rng.uniform(0.05, 0.12)),
                        _jitter(rng, (52, 102, 44), 20),
                    )
                    for _ in range(int(rng.integers(2, 6)))
                ],
                "lawn_far": _jitter(rng, (112, 150, 72), 15),
                "lawn_near": _jitter(rng, (70, 120, 50), 15),
                "patio": bool(rng.random() < 0.5),
                "patio_side": int(rng.integers(2)),
            }
        )
    return layouts


def _backyard(rng: np.random.Generator, layout: dict[str, Any], width: int, height: int) -> Image.Image:
    """Sky, trees, fence, bushes and lawn. Soft shapes at 1/8 scale then upscaled; fence slats at full scale."""
    lw, lh = max(16, width // 8), max(9, height // 8)
    season = float(rng.uniform(-0.15, 0.15))  # greener / more yellow lawn
    bright = float(rng.uniform(0.9, 1.1))
    small = Image.new("RGB", (lw, lh))
    d = ImageDraw.Draw(small)
    sky_y, ft, fb = (round(layout[k] * lh) for k in ("sky", "fence_top", "fence_bottom"))
    sky_top, sky_bottom = _jitter(rng, (120, 160, 210), 20), _jitter(rng, (190, 210, 225), 15)
    for y in range(ft + 1):
        d.line([(0, y), (lw, y)], fill=_mix(sky_top, sky_bottom, y / max(1, ft)))
    for _ in range(int(rng.integers(0, 4))):  # clouds
        cx, cy, r = rng.uniform(0, lw), rng.uniform(0, sky_y), rng.uniform(0.05, 0.15) * lw
        d.ellipse([cx - r, cy - r * 0.35, cx + r, cy + r * 0.35], fill=_jitter(rng, (235, 238, 240), 8))
    far, near = (
        _scale(_mix(layout[k], (150, 150, 60), max(0, season)), bright) for k in ("lawn_far", "lawn_near")
    )
    for y in range(fb - 1, lh):
        d.line([(0, y), (lw, y)], fill=_mix(far, near, (y - fb) / max(1, lh - fb)))
    for x, r, colour in layout["trees"]:
        c = _jitter(rng, _scale(colour, bright), 6)
        d.rectangle([x * lw - r * lw * 0.08, sky_y, x * lw + r * lw * 0.08, ft + 2], fill=(70, 52, 38))
        for _ in range(14):
            bx = x * lw + rng.uniform(-0.7, 0.7) * r * lw
            by = sky_y + rng.uniform(-0.5, 0.7) * r * lh
            br = rng.uniform(0.2, 0.4) * r * lw
            d.ellipse([bx - br, by - br * 0.8, bx + br, by + br * 0.8], fill=_jitter(rng, c, 16))
    if layout["patio"]:
        x0 = 0 if layout["patio_side"] == 0 else lw * 0.65
        x1 = lw * 0.35 if layout["patio_side"] == 0 else lw
        d.polygon(
            [(x0, lh * 0.8), (x1, lh * 0.75), (x1, lh), (x0, lh)], fill=_jitter(rng, (150, 145, 138), 8)
        )
    # Lawn texture: mowing stripes and a coarse random field, soft once upscaled.
    arr = np.asarray(small).astype(np.float32)
    yy, xx = np.mgrid[0:lh, 0:lw]
    stripe_w = float(rng.uniform(0.05, 0.09)) * lw
    stripes = np.where(((xx + 0.6 * yy) // stripe_w) % 2 == 0, 1.035, 0.965)
    stripes = np.where(yy >= fb, stripes, 1.0)[..., None]
    mottle = 1.0 + 0.2 * (rng.random((lh, lw, 1), dtype=np.float32) - 0.5)
    arr = np.clip(arr * mottle * stripes, 0, 255).astype(np.uint8)
    small = Image.fromarray(arr, "RGB").filter(ImageFilter.GaussianBlur(0.7))
    img = small.resize((width, height), Image.Resampling.BILINEAR)

    # Fence at full resolution: a board band with dark gaps between slats, and a top rail shadow.
    d = ImageDraw.Draw(img)
    fy0, fy1 = layout["fence_top"] * height, layout["fence_bottom"] * height
    fc = _scale(layout["fence_colour"], bright)
    d.rectangle([0, fy0, width, fy1], fill=fc)
    slat = max(3, round(layout["slat"] * width))
    gap = max(1, slat // 10)
    for x in range(0, width, slat):
        d.rectangle([x, fy0, x + gap, fy1], fill=_scale(fc, 0.55))
        d.polygon([(x, fy0), (x + slat / 2, fy0 - slat * 0.4), (x + slat, fy0)], fill=fc)  # pointed tops
    d.rectangle([0, fy0 + (fy1 - fy0) * 0.2, width, fy0 + (fy1 - fy0) * 0.26], fill=_scale(fc, 0.8))
    for x, w, h, colour in layout["bushes"]:  # bushes in front of the fence
        c = _scale(colour, bright)
        for _ in range(7):
            bx = (x + rng.uniform(-0.5, 0.5) * w) * width
            by = fy1 + rng.uniform(-0.8, 0.2) * h * height
            rx, ry = rng.uniform(0.3, 0.6) * w * width, rng.uniform(0.3, 0.6) * h * height
            d.ellipse([bx - rx, by - ry, bx + rx, by + ry], fill=_jitter(rng, c, 12))
    return img


def _foliage(d: ImageDraw.ImageDraw, rng: np.random.Generator, box: Box, colour: RGB) -> None:
    """A clump of leaves over part of ``box`` (one side or the bottom), drawn in front of a squirrel."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    side = rng.integers(3)
    for _ in range(int(rng.integers(6, 12))):
        if side == 0:  # bottom
            cx, cy = rng.uniform(x0 - 0.1 * w, x1 + 0.1 * w), rng.uniform(y0 + 0.6 * h, y1 + 0.1 * h)
        elif side == 1:  # left
            cx, cy = rng.uniform(x0 - 0.1 * w, x0 + 0.35 * w), rng.uniform(y0, y1)
        else:
            cx, cy = rng.uniform(x1 - 0.35 * w, x1 + 0.1 * w), rng.uniform(y0, y1)
        r = rng.uniform(0.1, 0.22) * max(w, h)
        d.polygon(_ellipse(cx, cy, r, r * 0.5, rng.uniform(0, 180), 16), fill=_jitter(rng, colour, 20))


def _post(d: ImageDraw.ImageDraw, rng: np.random.Generator, box: Box, colour: RGB) -> None:
    """A vertical fence slat / post through part of ``box``, drawn in front of a squirrel."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    pw = rng.uniform(0.2, 0.4) * w
    px = rng.uniform(x0 - 0.1 * w, x1 - 0.9 * pw)
    d.rectangle([px, y0 - 0.8 * h, px + pw, y1 + 0.3 * h], fill=_jitter(rng, colour, 10))
    d.rectangle([px, y0 - 0.8 * h, px + max(1, pw * 0.12), y1 + 0.3 * h], fill=_scale(colour, 0.6))


def _distractors(img: Image.Image, rng: np.random.Generator, layout: dict[str, Any], scale: float) -> None:
    """Unlabelled look-alikes: birds, fallen leaves, a cat, balls and toys."""
    d = ImageDraw.Draw(img)
    w, h = img.size
    lawn = layout["fence_bottom"] * h
    for kind in rng.choice(["bird", "leaves", "cat", "ball", "toy"], size=int(rng.integers(1, 4))):
        s = scale * float(np.exp(rng.uniform(math.log(12), math.log(120))))
        x, y = float(rng.uniform(0, w)), float(rng.uniform(lawn, h))
        if kind == "bird":
            if rng.random() < 0.3:  # flying, in the sky
                y = float(rng.uniform(0, layout["fence_top"] * h))
            c = _jitter(rng, [(40, 36, 34), (90, 70, 50), (60, 70, 110)][rng.integers(3)], 15)
            d.polygon(_ellipse(x, y, 0.5 * s, 0.22 * s, rng.uniform(-20, 20), 20), fill=c)
            d.ellipse([x + 0.35 * s, y - 0.3 * s, x + 0.6 * s, y - 0.05 * s], fill=c)
            d.polygon(
                [(x + 0.58 * s, y - 0.2 * s), (x + 0.75 * s, y - 0.15 * s), (x + 0.58 * s, y - 0.1 * s)],
                fill=(200, 160, 40),
            )
            d.polygon(
                [(x - 0.2 * s, y - 0.05 * s), (x + 0.1 * s, y - 0.05 * s), (x - 0.3 * s, y - 0.6 * s)],
                fill=_scale(c, 0.8),
            )
        elif kind == "leaves":
            for _ in range(int(rng.integers(8, 30))):
                lx, ly = x + rng.normal(0, 3 * s), y + rng.normal(0, 1.5 * s)
                r = rng.uniform(0.1, 0.3) * s
                c = _jitter(
                    rng, [(200, 120, 40), (170, 60, 30), (190, 170, 60), (110, 80, 45)][rng.integers(4)], 20
                )
                d.polygon(_ellipse(lx, ly, r, r * 0.45, rng.uniform(0, 180), 12), fill=c)
        elif kind == "cat":
            s *= 2.5  # a cat is bigger than a squirrel
            c = _jitter(
                rng, [(25, 25, 28), (200, 120, 50), (180, 178, 172), (110, 100, 90)][rng.integers(4)], 12
            )
            face = -1 if rng.random() < 0.5 else 1
            for lx in (-0.3, -0.2, 0.25, 0.35):  # legs
                d.rectangle(
                    [x + lx * s * face - 0.04 * s, y, x + lx * s * face + 0.04 * s, y + 0.4 * s], fill=c
                )
            d.polygon(_ellipse(x, y, 0.45 * s, 0.2 * s, 0, 24), fill=c)
            d.line(
                [(x - 0.4 * s * face, y - 0.05 * s), (x - 0.7 * s * face, y - 0.5 * s)],
                fill=c,
                width=max(1, round(0.06 * s)),
            )
            hx, hy = x + 0.5 * s * face, y - 0.2 * s
            d.ellipse([hx - 0.16 * s, hy - 0.14 * s, hx + 0.16 * s, hy + 0.14 * s], fill=c)
            for ex in (-0.12, 0.06):
                d.polygon(
                    [
                        (hx + ex * s, hy - 0.08 * s),
                        (hx + (ex + 0.03) * s, hy - 0.28 * s),
                        (hx + (ex + 0.08) * s, hy - 0.08 * s),
                    ],
                    fill=c,
                )
            for ex in (-0.07, 0.04):
                d.ellipse([hx + ex * s, hy - 0.04 * s, hx + (ex + 0.04) * s, hy], fill=(150, 170, 60))
        elif kind == "ball":
            r = 0.3 * s
            c = _jitter(
                rng, [(220, 40, 40), (40, 90, 210), (240, 210, 40), (230, 230, 225)][rng.integers(4)], 15
            )
            d.ellipse([x - r, y - r, x + r, y + r], fill=c)
            d.ellipse(
                [x - 0.5 * r, y - 0.6 * r, x - 0.1 * r, y - 0.25 * r], fill=_mix(c, (255, 255, 255), 0.6)
            )
        else:  # a toy: a bright block or a frisbee
            c = _jitter(rng, [(230, 80, 30), (60, 170, 80), (150, 60, 170)][rng.integers(3)], 15)
            if rng.random() < 0.5:
                d.polygon(_ellipse(x, y, 0.5 * s, 0.3 * s, rng.uniform(-30, 30), 12), fill=c)
            else:
                d.polygon(_ellipse(x, y, 0.6 * s, 0.18 * s, 0, 30), fill=c)


def _light(img: Image.Image, rng: np.random.Generator, condition: str, rain: bool) -> Image.Image:
    """Exposure and colour of the condition as per-channel lookup tables (cheap on 4K frames)."""
    x = np.arange(256, dtype=np.float32) / 255.0
    if condition == "night":  # IR camera: grey, flat, dark corners
        img = img.convert("L")
        gain, lift = float(rng.uniform(0.45, 0.6)), float(rng.uniform(0.1, 0.18))
        if rain:
            gain *= 0.85
        img = img.point(np.clip(255 * (lift + gain * x), 0, 255).astype(np.uint8).tolist())
        vy, vx = np.mgrid[-1:1:9j, -1:1:16j]
        vignette = np.clip(255 * (1.05 - 0.45 * (vx**2 + vy**2)), 0, 255).astype(np.uint8)
        v = Image.fromarray(vignette, "L").resize(img.size, Image.Resampling.BILINEAR)
        return Image.merge("RGB", (ImageChops.multiply(img, v),) * 3)
    if condition == "dusk":
        gains = np.array([0.72, 0.58, 0.58]) * rng.uniform(0.8, 1.05)
        gamma = float(rng.uniform(1.1, 1.3))
    else:
        gains = rng.uniform(0.95, 1.08) * (1 + rng.uniform(-0.04, 0.04, 3))
        gamma = float(rng.uniform(0.9, 1.1))
    lift = 0.06 if rain else 0.0  # rain: hazy, less contrast
    tables = []
    for g in gains:
        y = lift + (1 - lift) * g * x**gamma
        tables.extend(np.clip(255 * y, 0, 255).astype(np.uint8).tolist())
    return img.point(tables)


def _rain(img: Image.Image, rng: np.random.Generator, scale: float) -> Image.Image:
    """Slanted light streaks over the whole frame."""
    w, h = img.size
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    slant = float(rng.uniform(-0.35, 0.35))
    n = int(rng.integers(300, 900) * w * h / (3840 * 2160)) + 20
    xs, ys = rng.uniform(-0.2 * w, 1.2 * w, n), rng.uniform(-0.1 * h, h, n)
    lengths = rng.uniform(20, 110, n) * scale
    alphas = rng.integers(40, 120, n)
    width = max(1, round(2 * scale))
    for x, y, ln, a in zip(xs, ys, lengths, alphas, strict=True):
        d.line([(x, y), (x + slant * ln, y + ln)], fill=int(a), width=width)
    streak = Image.new("RGB", (w, h), (215, 220, 225))
    return Image.composite(streak, img, mask)


# ------------------------------------------------------------------------------------------- frames


@dataclass
class _Result:
    frame_id: str
    image: bytes
    label: str
    row: dict[str, Any]


def _webcam_frame(
    i: int, *, seed: int, width: int, height: int, prefix: str, layouts: list[dict[str, Any]]
) -> _Result:
    """One webcam frame; everything random comes from the generator of (seed, i)."""
    rng = np.random.default_rng([_WEBCAM_STREAM, seed, i])
    scale = height / 2160
    condition = str(rng.choice(CONDITIONS, p=CONDITION_P))
    rain, blur = bool(rng.random() < P_RAIN), bool(rng.random() < P_BLUR)
    n_wanted = int(rng.choice(len(N_SQUIRREL_P), p=N_SQUIRREL_P))
    layout = layouts[int(rng.integers(len(layouts)))]
    img = _backyard(rng, layout, width, height)
    if rng.random() < P_DISTRACTORS:
        _distractors(img, rng, layout, scale)

    boxes: list[Box] = []
    occluded = False
    draw = ImageDraw.Draw(img)
    for _ in range(n_wanted):
        # Log-uniform-ish heights skewed to small: most squirrels are far from the camera.
        u = float(rng.random()) ** 1.1
        height_px = max(4.0, MIN_SQUIRREL_PX * (MAX_SQUIRREL_PX / MIN_SQUIRREL_PX) ** u * scale)
        motion = float(rng.uniform(0.08, 0.25)) if blur else 0.0
        sprite = squirrel_sprite(rng, height_px, ir_eyes=condition == "night", motion=motion)
        sw, sh = sprite.image.size
        if rng.random() < 0.2:  # on the fence top rail
            foot = layout["fence_top"] * height + rng.uniform(-0.02, 0.01) * height
        else:  # on the lawn
            foot = rng.uniform(layout["fence_bottom"] * height, height + 0.3 * sh)
        x, y = round(rng.uniform(-0.3 * sw, width - 0.7 * sw)), round(foot - sh)
        box = _paste(img, sprite, x, y)
        if box is None:
            continue
        if rng.random() < P_OCCLUDED:
            full = (x + sprite.box[0], y + sprite.box[1], x + sprite.box[2], y + sprite.box[3])
            if rng.random() < 0.5:
                _foliage(draw, rng, full, (52, 102, 44))
            else:
                _post(draw, rng, full, layout["fence_colour"])
            occluded = True
        boxes.append(box)

    if blur and rng.random() < 0.5:  # the whole frame out of focus as well (wet lens, autofocus hunting)
        f = float(rng.uniform(2.0, 3.5))
        img = img.resize((round(width / f), round(height / f)), Image.Resampling.BILINEAR)
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    img = _light(img, rng, condition, rain)
    if rain:
        img = _rain(img, rng, scale)
    img = _noise(img, rng, {"day": 3.0, "dusk": 5.0, "night": 6.0}[condition])
    frame_id = f"{prefix}_{i:05d}"
    row = {
        "frame_id": frame_id,
        "condition": condition,
        "rain": rain,
        "blur": blur,
        "occluded": occluded,
        "n_squirrels": len(boxes),
    }
    return _Result(frame_id, _encode_jpeg(img), _label_text(boxes, width, height), row)


def _closeup(i: int, *, seed: int, size: int, prefix: str) -> _Result:
    """One "web photo": a big, centred, well-lit squirrel on a soft background."""
    rng = np.random.default_rng([_CLOSEUP_STREAM, seed, i])
    ls = max(8, size // 16)
    small = Image.new(
        "RGB", (ls, ls), _jitter(rng, [(120, 160, 90), (150, 190, 220), (130, 110, 80)][rng.integers(3)], 25)
    )
    d = ImageDraw.Draw(small)
    for _ in range(int(rng.integers(4, 10))):  # out-of-focus leaves, sky and bark
        c = _jitter(
            rng, [(60, 110, 50), (180, 200, 120), (100, 80, 60), (200, 215, 230)][rng.integers(4)], 25
        )
        cx, cy, r = rng.uniform(0, ls), rng.uniform(0, ls), rng.uniform(0.1, 0.4) * ls
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
    ground = rng.uniform(0.7, 0.95) * ls  # the branch or lawn it sits on
    d.rectangle([0, ground, ls, ls], fill=_jitter(rng, [(90, 70, 50), (80, 130, 60)][rng.integers(2)], 15))
    small = small.filter(ImageFilter.GaussianBlur(ls / 12))
    img = small.resize((size, size), Image.Resampling.BICUBIC)

    boxes: list[Box] = []
    if rng.random() < 0.12:  # a second, smaller squirrel at one side
        sprite = squirrel_sprite(rng, size * float(rng.uniform(0.18, 0.3)), max_rotation=10)
        sw, sh = sprite.image.size
        x = (
            round(rng.uniform(0, 0.1) * size)
            if rng.random() < 0.5
            else round(size - sw - rng.uniform(0, 0.1) * size)
        )
        box = _paste(img, sprite, x, round(ground / ls * size - sh * 0.9))
        if box is not None:
            boxes.append(box)
    frac = float(rng.uniform(0.4, 0.85))  # largest side of the main box, as a fraction of the image
    sprite = squirrel_sprite(rng, size * frac, max_rotation=10, longest_side=True)
    sw, sh = sprite.image.size
    x = round((size - sw) / 2 + rng.uniform(-0.1, 0.1) * max(0, size - sw))
    y = round((size - sh) / 2 + rng.uniform(-0.1, 0.1) * max(0, size - sh))
    box = _paste(img, sprite, x, y)
    if box is not None:
        boxes.append(box)

    img = _light(img, rng, "day", False)
    img = _noise(img, rng, 2.0)
    frame_id = f"{prefix}_{i:05d}"
    row = {
        "frame_id": frame_id,
        "condition": "day",
        "rain": False,
        "blur": False,
        "occluded": False,
        "n_squirrels": len(boxes),
    }
    return _Result(frame_id, _encode_jpeg(img), _label_text(boxes, size, size), row)


def _write_set(
    out_dir: Path, n: int, make: Callable[[int], _Result], desc: str, workers: int
) -> pd.DataFrame:
    """Write images, labels, classes.txt and metadata.csv, each file atomically."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "classes.txt", "".join(f"{c}\n" for c in CLASSES))
    rows = []
    if workers > 1:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(make, range(n), chunksize=4)
    else:
        pool, results = None, map(make, range(n))
    try:
        for r in tqdm(results, total=n, desc=desc, unit="img"):
            write_bytes(out_dir / "images" / f"{r.frame_id}.jpg", r.image)
            write_text(out_dir / "labels" / f"{r.frame_id}.txt", r.label)
            rows.append(r.row)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    meta = pd.DataFrame(rows, columns=METADATA_COLUMNS)
    write_csv(meta, out_dir / "metadata.csv")
    return meta


def make_webcam_set(
    out_dir: Path,
    n_frames: int,
    width: int = 3840,
    height: int = 2160,
    seed: int = 0,
    prefix: str = "frame",
    *,
    workers: int = 1,
) -> pd.DataFrame:
    """Backyard webcam frames: the target domain where a close-up-trained detector fails.

    Mostly easy daylight frames with rare hard ones (dusk, IR night, rain, motion blur, squirrels
    half behind a post or leaves), 0-3 squirrels from ~12 px to ~300 px tall (in a 2160-high frame),
    and unlabelled look-alikes (birds, leaves, a cat, balls). Returns the metadata table.
    """
    make = partial(
        _webcam_frame, seed=seed, width=width, height=height, prefix=prefix, layouts=_layouts(seed)
    )
    return _write_set(Path(out_dir), n_frames, make, "webcam frames", workers)


def make_closeup_set(
    out_dir: Path, n_images: int, size: int = 480, seed: int = 0, prefix: str = "closeup", *, workers: int = 1
) -> pd.DataFrame:
    """Close-up "web photos": the source domain a base detector is trained on (big, centred, daylight)."""
    make = partial(_closeup, seed=seed, size=size, prefix=prefix)
    return _write_set(Path(out_dir), n_images, make, "close-ups", workers)
