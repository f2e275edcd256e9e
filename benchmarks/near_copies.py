"""How well the frame hash finds near-copy frames, what threshold to ship, and what it costs.

A pool of demo webcam frames (three cameras, acorn.demo.synth) gets near-copies made from some of
its frames the way a webcam makes them a minute apart: exposure drift (gain 0.9-1.1), sensor
noise, a few pixels of camera shake, a squirrel that arrived, a JPEG re-encode. Truth: a frame
and its copies are one group; every other pair is distinct (frames of one camera included). A
few frames are also relit as dusk (gain 0.6, gamma 1.25): the same scene in other light, which
a labeler would want labeled again; reported apart from the truth.

For each threshold (differing bits) it prints pair precision and recall of "within threshold"
and of the groups ``acorn.data.near_copies.near_copy_groups`` forms, for 8 x 8, 16 x 16 and 24 x 24
hashes without an edge margin and the shipped one (24 x 24, margin 3),
and the hash's cost per 4K frame on the tile stage's path (decoded frame) and doctor's (file,
JPEG draft decode).

    python benchmarks/near_copies.py --frames 100 --copied 30 --copies 2 --relit 20 --out benchmarks/results/near_copies

With ``--pool`` it checks a real pool instead (no truth: a pool of distinct frames should make
one group per frame), and with ``--test`` the doctor's leak check against it:

    python benchmarks/near_copies.py --pool data/raw/images --test data/testset-frames/images
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops

from acorn.data.near_copies import (
    EDGE_LEVELS,
    HASH_SIDE,
    hamming,
    hash_bits,
    image_hash,
    leaks,
    near_copy_groups,
)
from acorn.data.tiling import frame_hash  # noqa: E402
from acorn.demo.synth import _noise, make_webcam_set, squirrel_sprite

THRESHOLDS = (8, 16, 24, 32, 36, 40, 48, 56)
# (side, edge margin): classic 64- and 256-bit dHash, 576 bits without and with the margin (shipped)
VARIANTS = ((8, 0), (16, 0), (24, 0), (HASH_SIDE, EDGE_LEVELS))


def near_copy(frame: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The frame a minute later: exposure drift, shake, noise, a squirrel arrived, re-encoded."""
    w, h = frame.size
    gain = float(rng.uniform(0.9, 1.1))
    out = frame.point([min(255, round(v * gain)) for v in range(256)] * 3)
    dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
    out = ImageChops.offset(out, dx, dy)
    sprite = squirrel_sprite(rng, float(rng.uniform(20, 150)))
    out.paste(sprite.image, (int(rng.integers(0, w - 200)), int(rng.integers(h // 2, h - 200))), sprite.image)
    out = _noise(out, rng, 4.0)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=90)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def relit(frame: Image.Image) -> Image.Image:
    """The same scene at dusk (as synth's dusk: red-heavy gain, darker midtones)."""
    x = np.arange(256) / 255.0
    tables = []
    for g in (0.62, 0.5, 0.5):
        tables += np.clip(255 * g * x**1.25, 0, 255).round().astype(int).tolist()
    return frame.point(tables)


def pair_scores(truth: np.ndarray, called: np.ndarray) -> tuple[float, float]:
    tp = int((truth & called).sum())
    precision = tp / max(1, int(called.sum()))
    recall = tp / max(1, int(truth.sum()))
    return precision, recall


def check_pool(pool: Path, test: Path | None, bits: int) -> None:
    """Groups of a real pool, its closest pair, and test frames within ``bits`` of it."""
    from acorn.data.tiling import list_frames

    frames, ids = list_frames(pool)
    start = time.perf_counter()
    hashes = [frame_hash(f) for f in frames]
    ms = (time.perf_counter() - start) / len(frames) * 1000
    d = hamming(hash_bits(hashes), hash_bits(hashes))[np.triu_indices(len(frames), 1)]
    groups = near_copy_groups(ids, hashes, bits)
    print(
        f"{len(frames)} frames in {pool}: {len(set(groups))} groups at {bits} bits; closest pair {d.min()} bits "
        f"(1st percentile {np.percentile(d, 1):.0f}); {ms:.1f} ms a frame to hash"
    )
    a, b = np.triu_indices(len(frames), 1)
    close = np.flatnonzero(d <= 2 * bits)
    for k in close[np.argsort(d[close], kind="stable")]:  # to look at: within twice the threshold
        print(f"  {d[k]:3d} bits: {frames[a[k]]}  {frames[b[k]]}")
    if test:
        test_frames, test_ids = list_frames(test)
        test_hashes = [frame_hash(f) for f in test_frames]
        nearest = hamming(hash_bits(test_hashes), hash_bits(hashes)).min()
        found = leaks(test_ids, test_hashes, ids, hashes, bits)
        print(
            f"{len(test_frames)} test frames in {test}: {len(found)} within {bits} bits of a pool frame; closest {nearest}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60, help="distinct demo frames (4K)")
    parser.add_argument("--copied", type=int, default=20, help="frames that get near-copies")
    parser.add_argument("--copies", type=int, default=2, help="near-copies of each")
    parser.add_argument("--relit", type=int, default=10, help="frames also relit as dusk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for pairs.csv and thresholds.csv")
    parser.add_argument("--pool", type=Path, help="a folder of frames to group (no synthetic pool)")
    parser.add_argument(
        "--test", type=Path, help="with --pool: test frames to look for near-copies of the pool in"
    )
    parser.add_argument("--bits", type=int, default=32, help="with --pool: tile.near_copy_bits")
    args = parser.parse_args()
    if args.pool:
        check_pool(args.pool, args.test, args.bits)
        return

    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        make_webcam_set(Path(tmp), args.frames, seed=args.seed + 50_000, prefix="nc", workers=2)
        paths = sorted((Path(tmp) / "images").glob("*.jpg"))
        start = time.perf_counter()
        drafted = [frame_hash(p) for p in paths]
        draft_ms = (time.perf_counter() - start) / len(paths) * 1000
        frames = [Image.open(p).convert("RGB") for p in paths]
    ids, images, truth_group, kind = [], [], [], []
    for i, frame in enumerate(frames):
        ids.append(f"f{i:03d}")
        images.append(frame)
        truth_group.append(i)
        kind.append("frame")
        if i < args.copied:
            for c in range(args.copies):
                ids.append(f"f{i:03d}_copy{c}")
                images.append(near_copy(frame, rng))
                truth_group.append(i)
                kind.append("copy")
        elif i < args.copied + args.relit:
            ids.append(f"f{i:03d}_dusk")
            images.append(relit(frame))
            truth_group.append(-1 - i)  # not a near-copy: its own truth group
            kind.append("relit")

    timings = []
    for image in frames[:20]:
        start = time.perf_counter()
        image_hash(image)
        timings.append(time.perf_counter() - start)
    decoded_ms = float(np.median(timings)) * 1000

    truth = np.asarray(truth_group)
    kinds = np.asarray(kind)
    base = np.asarray([int(x[1:4]) for x in ids])
    iu = np.triu_indices(len(ids), 1)
    same = (truth[:, None] == truth[None, :])[iu]
    relit_pair = (
        (base[:, None] == base[None, :]) & ((kinds[:, None] == "relit") | (kinds[None, :] == "relit"))
    )[iu]
    rows, pair_tables = [], []
    for side, edge in VARIANTS:
        hashes = [image_hash(im, side, edge) for im in images]
        bits = hash_bits(hashes)
        d = hamming(bits, bits)[iu]
        pair_tables.append(
            pd.DataFrame(
                {
                    "side": side,
                    "edge": edge,
                    "a": np.asarray(ids)[iu[0]],
                    "b": np.asarray(ids)[iu[1]],
                    "bits": d,
                    "near_copy": same,
                    "relit": relit_pair,
                }
            )
        )
        distinct = ~same & ~relit_pair
        print(
            f"{side}x{side} dHash, margin {edge} ({side * side} bits): near-copy pairs {same.sum()}, bits max {d[same].max()} "
            f"(median {np.median(d[same]):.0f}); distinct pairs {distinct.sum()}, bits min {d[distinct].min()} "
            f"(1st percentile {np.percentile(d[distinct], 1):.0f}); relit pairs bits {sorted(d[relit_pair].tolist())}"
        )
        for t in THRESHOLDS:
            groups = near_copy_groups(ids, hashes, t)
            grouped = (groups[:, None] == groups[None, :])[iu]
            p_pair, r_pair = pair_scores(same & ~relit_pair, (d <= t) & ~relit_pair)
            p_group, r_group = pair_scores(same & ~relit_pair, grouped & ~relit_pair)
            rows.append(
                {
                    "side": side,
                    "edge": edge,
                    "bits": t,
                    "pair_precision": round(p_pair, 3),
                    "pair_recall": round(r_pair, 3),
                    "group_precision": round(p_group, 3),
                    "group_recall": round(r_group, 3),
                    "relit_grouped": f"{int((grouped & relit_pair).sum())}/{int(relit_pair.sum())}",
                    "groups": len(set(groups)),
                    "truth_groups": len(set(truth_group)),
                }
            )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    full = [image_hash(f) for f in frames]
    drift = np.bitwise_count(hash_bits(full) ^ hash_bits(drafted)).sum(axis=1)
    print(
        f"hash cost per 4K frame: {decoded_ms:.1f} ms from the decoded frame (tile stage), "
        f"{draft_ms:.1f} ms from the JPEG file at 1/8 scale (doctor); draft vs full decode differ by "
        f"{int(drift.max())} bits at most (median {np.median(drift):.0f})"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "thresholds.csv", index=False)
        pairs = pd.concat(pair_tables)  # the shipped hash's pairs worth reading: truth, relit, the closest
        shipped = pairs[(pairs["side"] == HASH_SIDE) & (pairs["edge"] == EDGE_LEVELS)]
        shipped[shipped["near_copy"] | shipped["relit"] | (shipped["bits"] <= 64)].to_csv(
            args.out / "pairs.csv", index=False
        )


if __name__ == "__main__":
    main()
