"""acorn status: read-only lines from what the last cycle left, with the next step to run."""

import json

import pandas as pd

from acorn import paths
from acorn.ops.status import status_lines
from acorn.params import Params


def _cycle(root, queued: list[str], labeled: list[str], annotated: list[str]) -> None:
    (root / "metrics").mkdir()
    (root / paths.TRAIN_METRICS).write_text(json.dumps({"cycle": 2, "map50": 0.2}))
    (root / "models").mkdir()
    record = {
        "model_version": "acorn-detector-v3",
        "metric": "map50",
        "value": 0.2,
        "champion_version": 2,
        "champion_model_version": "acorn-detector-v2",
        "gain": -0.01,
    }
    (root / paths.REGISTRY).write_text(json.dumps(record))
    (root / paths.LABELS).mkdir(parents=True)
    pd.DataFrame({"tile_id": labeled, "batch": 1, "n_boxes": [1] + [0] * (len(labeled) - 1)}).to_csv(
        root / paths.LABELS / "manifest.csv", index=False
    )
    pd.DataFrame({"tile_id": queued, "batch": 3, "rank": range(1, len(queued) + 1)}).to_csv(
        root / paths.QUEUE, index=False
    )
    state = root / ".acorn" / "oracle"
    state.mkdir(parents=True)
    (state / "tasks.json").write_text(json.dumps({t: {} for t in labeled + queued}))
    (state / "annotations.json").write_text(json.dumps({t: {} for t in labeled + annotated}))


def test_fresh_repository_says_to_run_cycle_zero(tmp_path):
    assert status_lines(Params(), tmp_path) == [
        "no cycle has run yet: `dvc repro` runs cycle 0 (`acorn doctor` checks the set-up first)"
    ]


def test_open_tasks_say_label_them_first(tmp_path):
    _cycle(tmp_path, queued=["q1", "q2", "q3"], labeled=["a", "b"], annotated=["q1"])
    lines = status_lines(Params(), tmp_path)
    assert lines[0] == "cycle 2: 2 labeled tiles (1 with objects, 1 boxes)"
    assert "champion acorn-detector-v2 (gain -0.010" in lines[1]
    assert lines[2].startswith("labeling: 3 of 5 tasks done in oracle")
    assert "batch 3 of 3 tiles" in lines[3] and "3 not yet exported" in lines[3]
    assert lines[-1].startswith("next: label the 2 open tasks")


def test_labeled_queue_says_repro(tmp_path):
    _cycle(tmp_path, queued=["q1", "q2"], labeled=["a"], annotated=["q1", "q2"])
    assert status_lines(Params(), tmp_path)[-1].startswith("next: `dvc repro` to pull the new labels")


def test_unreachable_label_studio_is_a_line_not_a_failure(tmp_path, monkeypatch):
    _cycle(tmp_path, queued=["q1"], labeled=["a"], annotated=[])
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # discard port: refused at once
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k")
    p = Params().with_overrides({"labeling.backend": "label-studio"})
    lines = status_lines(p, tmp_path)
    assert any("unreachable" in line and "127.0.0.1:9" in line for line in lines)


def test_the_last_batch_cost_from_the_labels_snapshot(tmp_path):
    from acorn.labeling.base import Snapshot
    from acorn.labeling.snapshot import SNAPSHOT_DIR, write_snapshot

    _cycle(tmp_path, queued=["q1"], labeled=["a", "b"], annotated=[])
    assert not any(line.startswith("labeling cost") for line in status_lines(Params(), tmp_path))

    def task(tile: str, batch: int, seconds: float, shown: list, drawn: list) -> dict:
        return {
            "tile_id": tile,
            "data": {"batch": batch},
            "predictions": [{"model_version": "acorn-v2", "boxes": shown}],
            "annotations": [{"id": 1, "completed_by": "oracle", "lead_time": seconds, "boxes": drawn}],
        }

    box = [0, 10, 10, 50, 50]
    tasks = [
        task("a", 1, 3600.0, [], [box]),  # an earlier batch: only in the hours in all
        task("b", 2, 13.0, [box], [box, [0, 60, 60, 90, 90]]),  # kept one, added one
        task("c", 2, 6.0, [box], []),  # deleted one
    ]
    write_snapshot(Snapshot(project={"backend": "oracle"}, tasks=tasks), tmp_path / SNAPSHOT_DIR)
    lines = status_lines(Params(), tmp_path)
    assert (
        "labeling cost: batch 2: 2 tasks, 0.01 h, median 10 s a task (modelled); pre-annotations kept 1, "
        "moved 0, deleted 1, boxes added 1; 1.01 labeler-hours in all"
    ) in lines
