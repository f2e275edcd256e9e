"""Near-copy frames: a perceptual hash per frame, groups of near-copies, and the batch limit.

Webcam frames a minute apart are near-copies: the same scene, a little noise, a little light, an
animal that moved. Labeling the same tile position of ten of them buys about what one buys, and
a test frame that is a near-copy of a pool frame scores the model on what it trained on.

The hash is a difference hash (dHash) of a ``HASH_SIDE`` x ``HASH_SIDE`` grey thumbnail: one bit
per pair of horizontal neighbour cells, set when the right cell is brighter by more than
``EDGE_LEVELS`` grey levels. It compares the scene's layout: exposure drift, sensor noise, JPEG
re-encoding, a few pixels of camera shake and a squirrel that arrived flip few bits, another
scene (or the same camera after its trees, clouds and shadows changed) flips many. The edge
margin keeps flat sky and lawn, whose neighbour cells differ by a level or less, from flipping
bits at random, and it lets the same scene in other light (dusk) count as new: on the demo's
frames a 16 x 16 hash without the margin put near-copies (up to 19 bits) and distinct frames (from
18 bits) on top of each other, 24 x 24 with a margin of 3 levels parts them by 31 bits
(benchmarks/near_copies.py). numpy and PIL only: the ``imagehash`` package would add scipy and
PyWavelets for these few lines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

log = logging.getLogger("acorn")

HASH_SIDE = 24  # 24 x 24 = 576 bits; 8 x 8 (64 bits) gives two distinct demo frames the same hash
EDGE_LEVELS = 3  # a bit is set when the right cell is brighter by more than this (grey levels)
HASH_COLUMN = "frame_hash"  # tiles manifest: the frame's dHash, hex
GROUP_COLUMN = "near_copy_group"  # tiles manifest: the frame id leading the frame's near-copy group
POSITION_COLUMNS = ("row", "col")


def image_hash(image, side: int = HASH_SIDE, edge: int = EDGE_LEVELS) -> str:
    """dHash of a PIL image as hex (``side ** 2`` bits; ``edge``: the margin a bit needs).

    The thumbnail is a box average (each cell the mean of its pixels); frames are hashed
    through :func:`frame_hash`.
    """
    from PIL import Image

    gray = image.convert("L").resize((side + 1, side), Image.Resampling.BOX)
    cells = np.asarray(gray, dtype=np.int16)
    bits = cells[:, 1:] - cells[:, :-1] > edge
    return np.packbits(bits.ravel()).tobytes().hex()


def hash_bits(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes -> (n, bytes) uint8 array for XOR and bit counts."""
    if not len(hashes):
        return np.zeros((0, HASH_SIDE * HASH_SIDE // 8), np.uint8)
    return np.frombuffer(bytes.fromhex("".join(hashes)), np.uint8).reshape(len(hashes), -1)


def _words(bits: np.ndarray) -> np.ndarray:
    """(n, bytes) -> (n, words) uint64 when the bytes are whole words: 8x fewer XORs and counts
    (6.0 s -> 4.3 s to group 12,500 distinct frames, the worst case, on a shared 2-core CPU)."""
    return bits.view(np.uint64) if bits.shape[1] % 8 == 0 and bits.flags.c_contiguous else bits


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every row of ``a`` (n, bytes) and of ``b`` (m, bytes): (n, m)."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(axis=-1, dtype=np.int64)


def near_copy_groups(frame_ids: Sequence[str], hashes: Sequence[str], max_bits: int) -> np.ndarray:
    """The group of each frame: the id of the frame that leads it.

    Frames are taken in the given order (the manifest's: frame id, so a webcam's time-stamped
    names in time order); a frame joins the nearest leader within ``max_bits`` differing bits,
    else leads a group of its own. Leaders, not chains: a slow drift (dawn over an hour, frame
    by frame within the threshold) would chain a whole day into one group, where a leader's
    group spans at most ``2 * max_bits``. The first frame of a group names it, so appending
    frames in id order keeps every existing frame's group.
    """
    ids = np.asarray(frame_ids, dtype=object)
    bits = _words(hash_bits(list(hashes)))
    groups = ids.copy()
    leaders = np.empty_like(bits)
    leader_ids: list[str] = []
    for i in range(len(ids)):
        if leader_ids:
            d = np.bitwise_count(leaders[: len(leader_ids)] ^ bits[i]).sum(axis=1, dtype=np.int64)
            nearest = int(d.argmin())
            if d[nearest] <= max_bits:
                groups[i] = leader_ids[nearest]
                continue
        leaders[len(leader_ids)] = bits[i]
        leader_ids.append(ids[i])
    return groups


def group_frames(manifest: pd.DataFrame, max_bits: int) -> pd.Series:
    """``near_copy_group`` for every tile row of a manifest with ``frame_id`` and ``frame_hash``."""
    frames = manifest.drop_duplicates("frame_id").sort_values("frame_id")
    groups = near_copy_groups(frames["frame_id"].tolist(), frames[HASH_COLUMN].tolist(), max_bits)
    return manifest["frame_id"].map(pd.Series(groups, index=frames["frame_id"].to_numpy()))


def leaks(
    test_ids: Sequence[str],
    test_hashes: Sequence[str],
    pool_ids: Sequence[str],
    pool_hashes: Sequence[str],
    max_bits: int,
) -> pd.DataFrame:
    """Test frames within ``max_bits`` of a pool frame: (test, pool, bits), the nearest pool frame
    each, nearest first. Chunked over the test frames: (chunk x pool x bytes) at a time."""
    test, pool = hash_bits(list(test_hashes)), hash_bits(list(pool_hashes))
    rows = []
    if len(pool):
        for start in range(0, len(test), 256):
            d = hamming(test[start : start + 256], pool)
            nearest = d.argmin(axis=1)
            bits = d[np.arange(len(d)), nearest]
            for k in np.flatnonzero(bits <= max_bits):
                rows.append((test_ids[start + k], pool_ids[nearest[k]], int(bits[k])))
    return pd.DataFrame(rows, columns=["test", "pool", "bits"]).sort_values(
        ["bits", "test"], ignore_index=True
    )
