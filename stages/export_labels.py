"""export-labels: the labeling backend -> data/labels (YOLO labels of every finished annotation,
manifest, problems and report) and data/label-snapshot (everything the backend held: the backup).

data/labels is byte-identical when nothing changed, so DVC skips train (acorn.labeling.export);
a backend that lost labeled tasks since the last snapshot stops the stage before it writes
anything (acorn.labeling.snapshot).
"""

import logging

from acorn import paths
from acorn.entrypoint import run_stage
from acorn.labeling.backends import get_backend
from acorn.labeling.export import read_report, write_labels
from acorn.labeling.snapshot import SNAPSHOT_DIR, check_nothing_lost, read_snapshot, write_snapshot
from acorn.params import Params

log = logging.getLogger("acorn")


def export_labels(p: Params) -> None:
    pulled = get_backend(p).pull()
    check_nothing_lost(read_snapshot(SNAPSHOT_DIR), pulled.snapshot, SNAPSHOT_DIR)
    write_snapshot(pulled.snapshot, SNAPSHOT_DIR)
    write_labels(pulled, paths.LABELS, n_classes=len(p.classes))
    report = read_report(paths.LABELS)
    actions = ", ".join(f"{n} {action}" for action, n in report["problems_by_action"].items() if n)
    log.info(
        "%d labeled tiles (%d boxes, %d negatives) in %s; %d problems%s; snapshot of %d tasks in %s",
        report["labeled_tiles"],
        report["boxes"],
        report["negatives"],
        paths.LABELS,
        report["problems"],
        f" ({actions}: see {paths.LABELS}/problems.csv)" if actions else "",
        len(pulled.snapshot.tasks),
        SNAPSHOT_DIR,
    )


if __name__ == "__main__":
    run_stage(export_labels)
