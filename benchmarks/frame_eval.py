"""What frame-level scoring costs per cycle, and what it says beside the tile score.

Runs ``acorn.frames.evaluate.evaluate_frames`` (sliced detection + merge on whole frames,
ultralytics' metrics) on a folder of whole test frames at each overlap asked, and optionally the
train stage's tile scoring (``acorn.model.training.evaluate``) on the same frames' tiles, with one model.

    python benchmarks/frame_eval.py --frames data/testset-frames --model models/base.pt \
        --overlap 0,0.1 --tiles data/testset

Without a demo repository, the demo's test frames can be made first (``--make 100``: the frames
``make demo`` keeps in data/testset-frames, same seed and names).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from acorn.frames.evaluate import evaluate_frames
from acorn.params import load_params


def tile_scores(model: Path, tiles: Path, p) -> dict:
    """The train stage's tile scoring of ``model`` on the YOLO folder ``tiles``."""
    import yaml

    from acorn.model.training import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.yaml"
        names = dict(enumerate(p.classes))
        images = str((tiles / "images").resolve())
        data.write_text(yaml.safe_dump({"train": images, "val": images, "names": names}))
        start = time.perf_counter()
        scores = evaluate(model, data, p.model.imgsz, Path(tmp), threads=p.model.threads)
        return {**scores.as_dict(), "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=Path, required=True, help="YOLO folder of whole test frames")
    parser.add_argument("--model", type=Path, required=True, help="weights (.pt)")
    parser.add_argument("--overlap", default="0", help="comma-separated slice overlaps")
    parser.add_argument(
        "--conf", default="", help="comma-separated confidence floors (default: rank.threshold)"
    )
    parser.add_argument("--tiles", type=Path, help="the same frames' tiles (YOLO folder): tile scores beside")
    parser.add_argument(
        "--make", type=int, default=0, help="first make this many demo test frames in --frames"
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, help="write results.json here")
    args = parser.parse_args()
    p = load_params(args.params)
    if args.make:
        from acorn.demo.synth import make_webcam_set

        d = p.demo  # acorn.demo.run: the test set is seed + 10,000, names test_NNNNN
        make_webcam_set(
            args.frames, args.make, d.width, d.height, seed=d.seed + 10_000, prefix="test", workers=2
        )
    results: dict = {"load_average": os.getloadavg()[0], "model": str(args.model)}
    for conf in [float(c) for c in args.conf.split(",")] if args.conf else [p.rank.threshold]:
        for overlap in (float(o) for o in args.overlap.split(",")):
            scores = evaluate_frames(args.model, args.frames, p, overlap=overlap, conf=conf)
            row = {
                **scores.metrics(""),
                "seconds_per_frame": round(scores.seconds / max(1, scores.frames), 3),
            }
            results[f"frames_conf_{conf}_overlap_{overlap}"] = row
            print(f"frames, conf {conf}, overlap {overlap}: {json.dumps(row)}", flush=True)
    if args.tiles:
        results["tiles"] = tile_scores(args.model, args.tiles, p)
        print(f"tiles: {json.dumps(results['tiles'])}", flush=True)
    results["load_average_after"] = os.getloadavg()[0]
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
