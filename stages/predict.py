"""predict: models/model.pt + data/tiles - data/labels -> data/predictions (per-box, per-tile Parquet).

Batched inference over every unlabeled tile at a low confidence floor (acorn.detection).
"""

from acorn.cli import run_stage
from acorn.pipeline import predict

if __name__ == "__main__":
    run_stage(predict)
