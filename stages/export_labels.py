"""export-labels: the labeling backend -> data/labels: YOLO labels of every finished annotation + manifest.

Byte-identical when nothing changed, so DVC skips train (acorn.labels).
"""

from acorn.cli import run_stage
from acorn.pipeline import export_labels

if __name__ == "__main__":
    run_stage(export_labels)
