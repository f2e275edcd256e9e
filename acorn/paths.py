"""Where each stage reads and writes, relative to the repository root (mirrors dvc.yaml)."""

from pathlib import Path

RAW = Path("data/raw")
TILES = Path("data/tiles")
TILE_MANIFEST = TILES / "manifest.parquet"
TRUTH = TILES / "truth"
LABELS = Path("data/labels")
PREDICTIONS = Path("data/predictions")
PRED_BOXES = PREDICTIONS / "boxes.parquet"
PRED_TILES = PREDICTIONS / "tiles.parquet"
PRED_LABELED = PREDICTIONS / "labeled.parquet"  # embeddings of labeled tiles (diversity)
QUEUE = Path("data/queue.csv")
SOURCE = Path("data/source")  # the demo's close-ups (base model training)
REPLAY = Path("data/replay")  # a subset of the base model's domain, replayed in fine-tunes
MODEL = Path("models/model.pt")  # trained this cycle
CHAMPION = Path("models/champion.pt")  # the registry's champion: predicts and pre-annotates
REGISTRY = Path("models/registry.json")
TRAIN_METRICS = Path("metrics/train.json")
RANK_METRICS = Path("metrics/rank.json")
WORK = Path(".acorn/work")  # scratch space for ultralytics runs, git-ignored
FRAME_HASHES = Path(".acorn/cache/frame-hashes.parquet")  # tile: frames' sha1 by path + stat, git-ignored
