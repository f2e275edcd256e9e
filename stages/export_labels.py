"""export-labels: the labeling backend -> data/labels (YOLO labels of every finished annotation,
manifest, problems and report), data/label-snapshot (everything the backend held: the backup) and
data/review (the newest labels scored against the champion's boxes: suspect labels), which go
to the backend's review queue: the oracle answers them in ``acorn annotate``; in Label Studio they
are marked on their tasks and listed in the project's "Suspect labels" tab, where a correction is
made in place and comes back with the next pull.

data/labels is byte-identical when nothing changed, so DVC skips train (acorn.labeling.export);
a backend that lost labels since the last snapshot, another project, or no last snapshot where
there was one, stops the stage before it writes anything, unless ACORN_ALLOW_LABEL_LOSS=1 says
that the change is meant (acorn.labeling.snapshot).

The suspects are scored here, before the predict stage replaces data/predictions: until then it
holds the champion's boxes for the tiles just labeled, predicted while they were unlabeled
(acorn.labeling.review). data/predictions is read as it is, undeclared, as predict reads
data/queue.csv: declaring it would make a cycle in the DAG.
"""

import logging
import os

from acorn import paths
from acorn.labeling.backends import get_backend
from acorn.labeling.export import read_report, write_labels
from acorn.labeling.review import REVIEW, SUSPECTS, review_labels
from acorn.labeling.snapshot import (
    ALLOW_VAR,
    SNAPSHOT_DIR,
    LabelsLostError,
    check_nothing_lost,
    exported_before,
    read_snapshot,
    write_snapshot,
)
from acorn.params import Params
from acorn.runtime.entrypoint import run_stage

log = logging.getLogger("acorn")


def export_labels(p: Params) -> None:
    backend = get_backend(p)
    pulled = backend.pull()
    try:
        accepted = check_nothing_lost(
            read_snapshot(SNAPSHOT_DIR),
            pulled.snapshot,
            SNAPSHOT_DIR,
            evidence=exported_before(paths.LABELS),
            allow=os.environ.get(ALLOW_VAR, "") not in ("", "0"),
        )
    except LabelsLostError as exc:
        if "DVC_STAGE" in os.environ:  # dvc repro removes a stage's outputs (but persist ones) before it runs
            raise LabelsLostError(
                f"{exc}; `dvc checkout {paths.LABELS}` puts back the labels dvc repro removed before the stage"
            ) from None
        raise
    for line in accepted:
        log.warning("%s", line)
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
    scored, suspects = review_labels(
        pulled.annotations, pulled.boxes, len(p.classes), p.review.budget, p.review.confidence
    )
    reasons = ", ".join(f"{n} {r}" for r, n in suspects["reason"].value_counts().items())
    log.info(
        "%d newly labeled tiles scored against the champion's boxes; %d suspect labels%s in %s",
        len(scored),
        len(suspects),
        f" ({reasons})" if reasons else "",
        REVIEW / SUSPECTS,
    )
    if len(suspects):
        log.info("%d suspect labels newly queued for review", backend.push_review(suspects))


if __name__ == "__main__":
    run_stage(export_labels)
