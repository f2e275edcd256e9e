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
QUEUE = Path("data/queue.csv")
SOURCE = Path("data/source")
MODEL = Path("models/model.pt")
REGISTRY = Path("models/registry.json")
TRAIN_METRICS = Path("metrics/train.json")
RANK_METRICS = Path("metrics/rank.json")
WORK = Path(".acorn/work")  # scratch space for ultralytics runs, git-ignored
