"""DVC stage `tile`: see acorn.pipeline.tile and dvc.yaml."""

from acorn.cli import run_stage

if __name__ == "__main__":
    run_stage("tile")
