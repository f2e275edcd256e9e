"""register: models/model.pt + metrics/train.json -> an MLflow model version, models/registry.json.

Alias challenger always, champion only if it beats the current one (acorn.registry).
"""

from acorn.cli import run_stage
from acorn.pipeline import register

if __name__ == "__main__":
    run_stage(register)
