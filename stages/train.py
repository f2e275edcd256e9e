"""train: data/labels + data/tiles + models/base.pt -> models/model.pt, metrics/train.json.

Fine-tunes the base model on the labeled tiles and evaluates on the fixed test set;
cycle 0 (no labels) evaluates the base model (acorn.training).
"""

from acorn.cli import run_stage
from acorn.pipeline import train

if __name__ == "__main__":
    run_stage(train)
