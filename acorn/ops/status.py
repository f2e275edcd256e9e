"""``acorn status``: where the loop stands, in a few lines, fast and read-only.

Reads only what the last cycle left (metrics, registry record, labels manifest, labels' snapshot,
queue) and, for
Label Studio, one short API call; it never runs a stage, trains or loads a model, so it is safe to
run at any time, even while ``dvc repro`` runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from acorn import paths
from acorn.params import Params


@dataclass
class LabelingProgress:
    tasks: int | None  # None: unknown (server unreachable)
    done: int | None
    where: str
    problem: str = ""


def labeling_progress(p: Params, root: Path) -> LabelingProgress:
    if p.labeling.backend == "oracle":
        from acorn.labeling.oracle import DEFAULT_STATE_DIR

        state = root / DEFAULT_STATE_DIR
        tasks, done = (_json_keys(state / name) for name in ("tasks.json", "annotations.json"))
        return LabelingProgress(len(tasks), len(done & tasks), "oracle (simulated annotator)")
    return _label_studio_progress(p, root)


def _json_keys(path: Path) -> set[str]:
    return set(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else set()


def _label_studio_progress(p: Params, root: Path) -> LabelingProgress:
    import httpx
    from dotenv import dotenv_values

    env = {**dotenv_values(root / ".env"), **os.environ}
    url, key = env.get("LABEL_STUDIO_URL"), env.get("LABEL_STUDIO_API_KEY")
    where = f"Label Studio project {p.labeling.project!r}"
    if not url or not key:
        return LabelingProgress(None, None, where, "LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY not set")
    where += f" at {url}"
    scheme = "Bearer" if key.count(".") == 2 else "Token"  # personal access token (JWT) or legacy
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/api/projects/",
            params={"title": p.labeling.project},
            headers={"Authorization": f"{scheme} {key}"},
            timeout=1.5,
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return LabelingProgress(None, None, where, f"unreachable ({type(exc).__name__})")
    body = response.json()
    projects = [r for r in body.get("results", body) if r.get("title") == p.labeling.project]
    if not projects:
        return LabelingProgress(0, 0, where, "no such project yet (the first rank stage creates it)")
    project = projects[0]
    return LabelingProgress(
        int(project.get("task_number") or 0), int(project.get("num_tasks_with_annotations") or 0), where
    )


def status_lines(p: Params, root: Path = Path()) -> list[str]:
    """What a person needs to decide the next step: cycle, labels, queue, champion, what to run."""
    lines = []
    metrics = _read_json(root / paths.TRAIN_METRICS)
    record = _read_json(root / paths.REGISTRY)
    labels = _read_labels(root)
    if metrics is None:
        return ["no cycle has run yet: `dvc repro` runs cycle 0 (`acorn doctor` checks the set-up first)"]
    with_objects = int((labels["n_boxes"] > 0).sum()) if len(labels) else 0
    lines.append(
        f"cycle {metrics['cycle']}: {len(labels)} labeled tiles ({with_objects} with objects, "
        f"{int(labels['n_boxes'].sum()) if len(labels) else 0} boxes)"
    )
    if record:
        champion = record.get("champion_model_version", f"v{record.get('champion_version')}")
        gain = record.get("gain")
        lines.append(
            f"model {record['model_version']}: {record['metric']} {record['value']:.3f} on the test set; "
            f"champion {champion}"
            + (f" (gain {gain:+.3f} over the previous champion)" if gain is not None else "")
        )
    queue = _read_queue(root)
    progress = labeling_progress(p, root)
    if progress.tasks is None:
        lines.append(f"labeling: {progress.where}: {progress.problem}")
    else:
        lines.append(
            f"labeling: {progress.done} of {progress.tasks} tasks done in {progress.where}"
            + (f" ({progress.problem})" if progress.problem else "")
        )
    cost = _cost_line(root, int(metrics["cycle"]))
    if cost:
        lines.append(cost)
    waiting = 0
    if queue is not None:
        waiting = int((~queue["tile_id"].isin(labels["tile_id"])).sum())
        lines.append(
            f"queue: batch {int(queue['batch'].max())} of {len(queue)} tiles in {paths.QUEUE}, "
            f"{waiting} not yet exported as labels"
        )
    reports = sorted((root / "reports" / "cycles").glob("*.md"))
    if reports:
        lines.append(f"last report: {reports[-1].relative_to(root)}")
    lines.append(_next_step(progress, waiting, queue is not None))
    return lines


def _cost_line(root: Path, cycle: int) -> str | None:
    """What the last cycle's batch cost the labelers, from the labels' snapshot (None without one)."""
    from acorn.labeling.cost import ORACLE, annotation_costs, cycle_totals
    from acorn.labeling.snapshot import SNAPSHOT_DIR, read_snapshot

    snapshot = read_snapshot(root / SNAPSHOT_DIR)
    if snapshot is None:
        return None
    costs = annotation_costs(snapshot.tasks)
    t = cycle_totals(costs, cycle)
    hours = "no time recorded" if pd.isna(t["hours"]) else f"{t['hours']:.2f} h"
    if not pd.isna(t["median_s"]):
        hours += f", median {t['median_s']:.0f} s a task"
    modelled = " (modelled)" if (costs["labeler"] == ORACLE).any() else ""
    so_far = "" if pd.isna(t["labeler_hours"]) else f"; {t['labeler_hours']:.2f} labeler-hours in all"
    return (
        f"labeling cost: batch {cycle}: {int(t['tasks'])} tasks, {hours}{modelled}; pre-annotations kept "
        f"{int(t['kept'])}, moved {int(t['moved'])}, deleted {int(t['deleted'])}, boxes added {int(t['added'])}"
        + so_far
    )


def _next_step(progress: LabelingProgress, waiting: int, queued: bool) -> str:
    if not queued:
        return "next: `dvc repro` (no queue yet)"
    if progress.tasks is not None and progress.done is not None and progress.done < progress.tasks:
        return (
            f"next: label the {progress.tasks - progress.done} open tasks (`acorn annotate` simulates it), "
            "then `dvc repro` to train on them"
        )
    if waiting:
        return "next: `dvc repro` to pull the new labels, train and queue the next batch"
    return "next: `dvc repro` (the queue is labeled and exported)"


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read_labels(root: Path) -> pd.DataFrame:
    from acorn.labeling.export import read_manifest

    return read_manifest(root / paths.LABELS)


def _read_queue(root: Path) -> pd.DataFrame | None:
    path = root / paths.QUEUE
    return pd.read_csv(path, dtype={"tile_id": str}) if path.is_file() else None
