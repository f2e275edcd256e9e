"""DVC stage `predict`: see acorn.pipeline.predict and dvc.yaml."""

from acorn.cli import run_stage

if __name__ == "__main__":
    run_stage("predict")
