"""DVC stage `train`: see acorn.pipeline.train and dvc.yaml."""

from acorn.cli import run_stage

if __name__ == "__main__":
    run_stage("train")
