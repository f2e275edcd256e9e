"""Where each stage reads and writes, relative to the repository root (mirrors dvc.yaml)."""

from pathlib import Path

RAW = Path("data/raw")
TILES = Path("data/tiles")
TILE_MANIFEST = TILES / "manifest.parquet"
TRUTH = TILES / "truth"
LABELS = Path("data/labels")
LABEL_SNAPSHOT = Path("data/label-snapshot")  # export-labels: the tasks as pulled, the labels' backup
REVIEW = Path("data/review")  # export-labels: suspect-label scores (persist: scores are kept)
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
TRAIN_EPOCHS = Path("metrics/train-epochs")  # train: each epoch's losses and validation scores (dvclive)
CYCLE_REPORTS = Path("reports/cycles")  # report: NNNN.md and its pictures, one per cycle
HISTORY = CYCLE_REPORTS / "history.csv"  # report: one row per cycle, the learning curve dvc plots draw
WORK = Path(".acorn/work")  # scratch space for ultralytics runs, git-ignored
PREDICT_CACHE = Path(".acorn/cache/predict")  # predict: boxes per model and frame, git-ignored
ORACLE_STATE = Path(".acorn/oracle")  # the simulated annotator's tasks and answers, git-ignored
FRAME_HASHES = Path(".acorn/cache/frame-hashes.parquet")  # tile: frames' sha1 by path + stat, git-ignored
SCORED_TEST_BOXES = Path(".acorn/cache/test-boxes")  # train: each model's scored test boxes, the report's
