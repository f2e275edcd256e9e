"""The review queue on a real Label Studio server (see conftest.py): suspect labels are marked on
their tasks, the project's review tab lists exactly them in order, marking again changes nothing,
and a reviewer's correction comes back through ``pull`` as the label that counts."""

from __future__ import annotations

import pandas as pd
import pytest

from acorn.labeling.labelstudio.backend import REVIEW_VIEW

from .conftest import no_predictions
from .test_labeling_cost_ls import region

pytestmark = pytest.mark.labelstudio


def suspects_of(pulled, tiles: list[str], cycle: int = 1) -> pd.DataFrame:
    """Rows as acorn.labeling.review writes them, for ``tiles`` in rank order."""
    ann = pulled.annotations.set_index("tile_id")
    return pd.DataFrame(
        {
            "cycle": cycle,
            "rank": range(1, len(tiles) + 1),
            "tile_id": tiles,
            "annotation_id": [int(ann.at[t, "annotation_id"]) for t in tiles],
            "score": [0.1 * (i + 1) for i in range(len(tiles))],
            "reason": ["missed", "spurious"][: len(tiles)],
        }
    )


def test_suspects_go_to_the_review_tab_and_a_correction_comes_back(workspace):
    backend = workspace.backend()
    backend.push(workspace.tiles(["a", "b", "c"]), no_predictions())
    tasks = workspace.tasks(backend)
    for tile in ("a", "b", "c"):
        backend.client.annotations.create(tasks[tile].id, result=[], was_cancelled=False)
    suspects = suspects_of(backend.pull(), ["c", "a"])

    assert backend.push_review(suspects) == 2
    assert backend.push_review(suspects) == 0  # a repeated dvc repro marks nothing twice
    pid = backend.project_id()
    views = [v for v in backend.client.views.list(project=pid) if (v.data or {}).get("title") == REVIEW_VIEW]
    assert len(views) == 1
    listed = backend.client.tasks.list(project=pid, view=views[0].id, fields="task_only")
    assert [t.data["tile_id"] for t in listed] == ["c", "a"]  # most suspect first, only the suspects
    marked = workspace.tasks(backend)["c"].data
    assert (marked["review_reason"], marked["review_rank"], marked["review_cycle"]) == ("missed", 1, 1)
    assert marked["review_annotation"] == int(suspects.at[0, "annotation_id"])

    # the reviewer finds the squirrel the label missed and fixes the label in place
    annotation = workspace.tasks(backend)["c"].annotations[0]
    backend.client.annotations.update(annotation["id"], result=[region(10, 20, 110, 220)])
    pulled = backend.pull()
    boxes = pulled.boxes[pulled.boxes["tile_id"] == "c"]
    assert len(boxes) == 1 and abs(boxes["x2"].iloc[0] - 110) <= 1
    assert pulled.boxes[pulled.boxes["tile_id"] == "a"].empty  # confirmed as empty: unchanged
    assert sorted(pulled.annotations["tile_id"]) == ["a", "b", "c"]  # nothing lost


def test_suspects_without_a_task_are_skipped_and_named(workspace, caplog):
    backend = workspace.backend()
    backend.push(workspace.tiles(["a"]), no_predictions())
    task = workspace.tasks(backend)["a"]
    backend.client.annotations.create(task.id, result=[], was_cancelled=False)
    suspects = suspects_of(backend.pull(), ["a"])
    gone = suspects.assign(tile_id="gone")
    with caplog.at_level("WARNING", logger="acorn"):
        assert backend.push_review(pd.concat([suspects, gone], ignore_index=True)) == 1
    assert "suspect label of tile gone: no task in the project" in caplog.text
