"""export-labels: the labeling backend -> data/labels: YOLO labels of every finished annotation + manifest.

Byte-identical when nothing changed, so DVC skips train (acorn.labeling.export).
"""

import logging

from acorn import paths
from acorn.entrypoint import run_stage
from acorn.labeling.backends import get_backend
from acorn.labeling.export import write_labels
from acorn.params import Params

log = logging.getLogger("acorn")


def export_labels(p: Params) -> None:
    manifest = write_labels(get_backend(p).pull(), paths.LABELS, n_classes=len(p.classes))
    log.info("%d labeled tiles (%d boxes) in %s", len(manifest), int(manifest["n_boxes"].sum()), paths.LABELS)


if __name__ == "__main__":
    run_stage(export_labels)
