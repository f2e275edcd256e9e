"""DVC stage `register`: see acorn.pipeline.register and dvc.yaml."""

from acorn.cli import run_stage

if __name__ == "__main__":
    run_stage("register")
