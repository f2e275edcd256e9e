"""DVC stage `rank`: see acorn.pipeline.rank and dvc.yaml."""

from acorn.cli import run_stage

if __name__ == "__main__":
    run_stage("rank")
