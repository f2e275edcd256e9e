"""rank: data/predictions -> data/queue.csv, pushed to the labeling backend.

The query strategy scores tiles, the batch selection picks the budget (acorn.strategies).
"""

from acorn.cli import run_stage
from acorn.pipeline import rank

if __name__ == "__main__":
    run_stage(rank)
