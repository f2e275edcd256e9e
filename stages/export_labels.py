"""DVC stage `export-labels`: see acorn.pipeline.export_labels and dvc.yaml."""

from acorn.cli import run_stage

if __name__ == "__main__":
    run_stage("export_labels")
