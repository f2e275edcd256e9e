"""A real Label Studio behind a fault-injecting proxy (faultproxy.py): slow, failing, rate-limited.

Every call is retried a bounded number of times with backoff (honouring ``Retry-After``, up to
a cap) and then fails with an error naming the server and what was being done; retries never
make a task, a prediction or an annotation twice, also when the try that timed out had in fact
done its work. Counts are checked on the server itself, not through the proxy. The last two
tests SIGKILL the push half-way (at the pause point ``labelstudio.push.after_tasks``), in a
process of its own and inside `dvc repro`'s rank stage, then push again.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import pandas as pd
import pytest

from acorn.labeling.labelstudio.annotator import simulate_annotations
from acorn.labeling.labelstudio.backend import LabelStudioBackend
from acorn.labeling.labelstudio.client import LabelStudioError, LabelStudioUnavailable, RetryPolicy

from .conftest import Workspace, no_predictions
from .faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.labelstudio

IMPORT_TASKS = r"^/api/projects/\d+/import(\?|$)"
IMPORT_PREDICTIONS = r"^/api/projects/\d+/import/predictions"
LIST_TASKS = r"^/api/tasks"
# generous for a loaded 2-core machine: a real request takes well under a second
TIMEOUT = 6.0


@pytest.fixture
def proxy(ls_server):
    with FaultProxy(ls_server.url) as p:
        yield p


def through(
    workspace: Workspace, proxy: FaultProxy, chunk_size: int = 1000, **policy: float
) -> LabelStudioBackend:
    """The backend as the pipeline builds it, but reaching the server through the proxy."""
    options = {"tries": 4, "backoff": 0.05, "max_wait": 1.0, "timeout": TIMEOUT, **policy}
    return workspace.backend(url=proxy.url, retry=RetryPolicy(**options), chunk_size=chunk_size)


def on_server(workspace: Workspace) -> Counter[str]:
    """Tasks per tile, asked of the server directly."""
    direct = workspace.backend()
    tasks = direct.client.tasks.list(project=direct.project_id(), fields="task_only", page_size=1000)
    return Counter(t.data["tile_id"] for t in tasks)


def tries(proxy: FaultProxy, method: str, path: str) -> list[float]:
    import re

    return [h.at for h in proxy.hits if h.method == method and re.search(path, h.path)]


def test_server_errors_are_retried_and_the_push_lands_once(workspace, proxy):
    backend = through(workspace, proxy)
    backend.setup()
    for status in (500, 502, 503):
        proxy.add(Fault("status", "POST", IMPORT_TASKS, times=1, status=status))
    ids = ["a", "b", "c"]
    result = backend.push(workspace.tiles(ids), no_predictions())
    assert result.created == 3
    assert len(tries(proxy, "POST", IMPORT_TASKS)) == 4, "three failures, then the import"
    assert on_server(workspace) == dict.fromkeys(ids, 1)
    pulled = backend.pull()
    assert pulled.annotations.empty and [t["tile_id"] for t in pulled.snapshot.tasks] == ids


def test_a_server_that_keeps_failing_is_named_with_what_was_being_done(workspace, proxy):
    backend = through(workspace, proxy)
    proxy.add(Fault("status", status=503))
    started = time.monotonic()
    with pytest.raises(LabelStudioUnavailable) as error:
        backend.push(workspace.tiles(["a", "b", "c"]), no_predictions())
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert message.startswith(
        f"Label Studio at {proxy.url} did not answer pushing 3 tasks to project {workspace.title!r} "
        "after 4 tries over"
    ), message
    assert "HTTP 503" in message
    assert len(proxy.faulted()) == 4, "bounded: four tries, no more"
    assert on_server(workspace) == {}


def test_rate_limit_waits_what_retry_after_asks_up_to_the_cap(workspace, proxy):
    backend = through(workspace, proxy, max_wait=1.5)
    backend.setup()
    proxy.add(Fault("status", "POST", IMPORT_TASKS, times=1, status=429, headers={"Retry-After": "1"}))
    backend.push(workspace.tiles(["a"]), no_predictions())
    first, second = tries(proxy, "POST", IMPORT_TASKS)
    assert second - first >= 1.0, "Retry-After: 1 is honoured (the backoff alone would be 0.05 s)"

    proxy.clear()
    proxy.add(Fault("status", "POST", IMPORT_TASKS, times=1, status=429, headers={"Retry-After": "3600"}))
    backend.push(workspace.tiles(["b"], model_version="m1"), no_predictions())
    first, second = tries(proxy, "POST", IMPORT_TASKS)
    assert 1.4 <= second - first < 10, "an hour asked, the cap (1.5 s) waited"
    assert on_server(workspace) == {"a": 1, "b": 1}


def test_a_server_slow_past_the_timeout_is_given_up_on(workspace, proxy):
    backend = through(workspace, proxy, tries=3, timeout=0.5)
    proxy.add(Fault("hang", seconds=3.0))
    started = time.monotonic()
    with pytest.raises(LabelStudioUnavailable) as error:
        backend.pull()
    assert time.monotonic() - started < 6, "3 tries x 0.5 s + 0.15 s of backoff"
    message = str(error.value)
    assert message.startswith(
        f"Label Studio at {proxy.url} did not answer pulling annotations from project {workspace.title!r} "
        "after 3 tries"
    ), message
    assert "ReadTimeout" in message


def test_dropped_connections_are_retried(workspace, proxy):
    backend = through(workspace, proxy)
    backend.push(workspace.tiles(["a", "b"]), no_predictions())
    proxy.add(Fault("reset", "GET", LIST_TASKS, times=2))
    assert [t["tile_id"] for t in backend.pull().snapshot.tasks] == ["a", "b"]
    assert len(proxy.faulted("reset")) == 2


def test_a_rejected_request_is_not_retried(workspace, proxy):
    backend = through(workspace, proxy)
    backend.setup()
    proxy.add(Fault("status", "POST", IMPORT_TASKS, status=400))
    with pytest.raises(
        LabelStudioError, match=f"{proxy.url} rejected a request while pushing 1 tasks.*HTTP 400"
    ):
        backend.push(workspace.tiles(["a"]), no_predictions())
    assert len(tries(proxy, "POST", IMPORT_TASKS)) == 1


def test_a_timeout_on_a_push_that_succeeded_makes_each_task_and_prediction_once(workspace, proxy):
    """The import reaches the server and is done; its answer comes after the client's timeout.
    The retry finds the tasks and imports nothing (item 3: two pushes of the same batch)."""
    backend = through(workspace, proxy)
    backend.setup()
    ids = ["a", "b", "c", "d"]
    proxy.add(Fault("stall", "POST", IMPORT_TASKS, times=1, seconds=TIMEOUT + 2))
    result = backend.push(workspace.tiles(ids, model_version="m1"), no_predictions())
    assert (result.created, result.unchanged) == (4, 0), "counted against the project before the push"
    assert len(tries(proxy, "POST", IMPORT_TASKS)) == 1, "the retry found the tasks: nothing re-sent"
    assert on_server(workspace) == dict.fromkeys(ids, 1)
    again = backend.push(workspace.tiles(ids, model_version="m1"), no_predictions())
    assert (again.created, again.unchanged) == (0, 4)
    assert on_server(workspace) == dict.fromkeys(ids, 1)

    # next cycle: the waiting tiles get the new model's prediction, once, though the answer was lost
    proxy.add(Fault("stall", "POST", IMPORT_PREDICTIONS, times=1, seconds=TIMEOUT + 2))
    refreshed = backend.push(workspace.tiles(ids, batch=2, model_version="m2"), no_predictions())
    assert refreshed.updated == 4
    versions = {
        t: sorted(p.model_version for p in task.predictions) for t, task in workspace.tasks(backend).items()
    }
    assert versions == dict.fromkeys(ids, ["m1", "m2"])


def test_an_import_that_arrives_after_its_retry_is_undone_by_the_next_push(workspace, proxy):
    """A request stuck on the way reaches the server after the client retried: two tasks per tile.
    Nobody has touched the second ones; the next push deletes them."""
    backend = through(workspace, proxy)
    backend.setup()
    ids = ["a", "b", "c"]
    late = TIMEOUT + 4
    proxy.add(Fault("late", "POST", IMPORT_TASKS, times=1, seconds=late))
    backend.push(workspace.tiles(ids), no_predictions())
    deadline = time.monotonic() + late + 30
    while sum(on_server(workspace).values()) < 6 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert on_server(workspace) == dict.fromkeys(ids, 2), "precondition: the late import made duplicates"
    tasks = backend.client.tasks.list(project=backend.project_id(), fields="task_only")
    first = min((t for t in tasks if t.data["tile_id"] == "a"), key=lambda t: t.id)
    backend.client.annotations.create(first.id, result=[], was_cancelled=False)

    pulled = backend.pull()
    assert sorted(pulled.annotations["tile_id"]) == ["a"] and any("several tasks" in n for n in pulled.notes)
    backend.push(workspace.tiles(ids), no_predictions())
    assert on_server(workspace) == dict.fromkeys(ids, 1)
    assert backend.pull().annotations["tile_id"].tolist() == ["a"], "the labeled task is the one kept"


def test_annotator_resending_an_answer_that_arrives_late_makes_it_once(workspace, proxy):
    """The first answer is stuck on the way past the timeout; the retry finds the task still
    waiting and sends the answer again; the stuck one arrives after it and is refused (same
    ``unique_id``): one annotation per task."""
    backend = through(workspace, proxy)
    ids = ["a", "b", "c"]
    backend.push(workspace.tiles(ids), no_predictions())
    for tile_id in ids:
        workspace.write_truth(tile_id, "0 0.5 0.5 0.2 0.2\n")
    late = TIMEOUT + 3
    proxy.add(Fault("late", "POST", r"^/api/tasks/\d+/annotations", times=1, seconds=late))
    started = time.monotonic()
    simulate_annotations(backend, "data/tiles/truth", workers=1)
    time.sleep(max(0.0, started + late + 3 - time.monotonic()))  # the stuck answer has arrived
    creates = tries(proxy, "POST", r"^/api/tasks/\d+/annotations")
    assert len(creates) == 4, "three answers, one of them sent twice"
    per_task = {t: len(task.annotations) for t, task in workspace.tasks(workspace.backend()).items()}
    assert per_task == dict.fromkeys(ids, 1)
    assert len(backend.pull().boxes) == 3


def test_pull_under_faults_equals_a_clean_pull(workspace, proxy):
    direct = workspace.backend()
    ids = [f"t{i}" for i in range(5)]
    direct.push(workspace.tiles(ids), no_predictions())
    for tile_id in ids[:3]:
        workspace.write_truth(tile_id, "0 0.5 0.5 0.2 0.2\n")
    simulate_annotations(direct, "data/tiles/truth")
    clean = direct.pull()
    backend = through(workspace, proxy, chunk_size=2)  # three pages
    proxy.add(Fault("status", "GET", r"page=2", times=1, status=502))
    proxy.add(Fault("hang", "GET", r"page=3", times=1, seconds=TIMEOUT + 1))
    faulty = backend.pull()
    pd.testing.assert_frame_equal(faulty.annotations, clean.annotations)
    pd.testing.assert_frame_equal(faulty.boxes, clean.boxes)
    assert faulty.snapshot == clean.snapshot
    assert len(proxy.faulted()) == 2


# --- the push killed (SIGKILL) half-way, then pushed again ------------------------------------

PUSH_SCRIPT = """
import sys
import pandas as pd
from acorn.labeling.labelstudio.backend import LabelStudioBackend
root, title, docroot = sys.argv[1:4]
backend = LabelStudioBackend(["squirrel", "bird"], repo_root=root, title=title, document_root=docroot)
frames = [pd.read_json(p, orient="records") for p in sys.argv[4:6]]
backend.push(frames[0], pd.read_json(sys.argv[6], orient="records"), frames[1])
"""


def _killed_push(workspace, tmp_path, queue, predictions, waiting) -> str:
    """``push`` in a process of its own (the connection from the environment, as rank has it),
    stopped at the pause point after the new tasks are imported and SIGKILLed there."""
    from tests.conftest import tool_env
    from tests.test_faults import kill_group, paused_at, start, wait_until

    conn = workspace.server.connection()
    files = []
    for name, frame in (("queue", queue), ("waiting", waiting), ("predictions", predictions)):
        path = tmp_path / f"{name}.json"
        frame.to_json(path, orient="records")
        files.append(str(path))
    script = tmp_path / "push.py"
    script.write_text(PUSH_SCRIPT)
    log = tmp_path / "push.log"
    env = {"LABEL_STUDIO_URL": conn.url, "LABEL_STUDIO_API_KEY": conn.api_key}
    assert "LABEL_STUDIO_API_KEY" not in tool_env(tmp_path)
    cmd = [
        sys.executable,
        str(script),
        str(workspace.root),
        workspace.title,
        str(workspace.server.document_root),
    ]
    proc = start(cmd + files, tmp_path, log, ACORN_TEST_PAUSE_AT="labelstudio.push.after_tasks", **env)
    wait_until(paused_at("labelstudio.push.after_tasks", log), proc, log, timeout=120)
    kill_group(proc)
    return log.read_text()


def _predictions(workspace) -> dict[str, list[str]]:
    return {
        tile: sorted(p.model_version for p in task.predictions)
        for tile, task in workspace.tasks(workspace.backend()).items()
    }


def test_push_killed_between_new_tasks_and_predictions_then_pushed_again_makes_each_once(workspace, tmp_path):
    """Cycle 2's push: new tiles are imported, then tiles still waiting get the new model's
    prediction, then the project's model version moves. SIGKILL between the first and the second:
    the next push adds only what is missing (no task, no prediction twice), the label stays."""
    backend = workspace.backend()
    boxes = pd.DataFrame(
        {"tile_id": ["a", "d"], "class_id": [0, 0], "confidence": [0.9, 0.8]}
        | {"x1": [10.0, 20.0], "y1": [10.0, 20.0], "x2": [100.0, 120.0], "y2": [90.0, 100.0]}
    )
    backend.push(workspace.tiles(["a", "b", "c"], batch=1, model_version="m1"), boxes)
    labeled = workspace.tasks(backend)["c"]
    backend.client.annotations.create(labeled.id, result=[], was_cancelled=False)

    queue = workspace.tiles(["d", "e"], batch=2, model_version="m2")
    waiting = workspace.tiles(["a", "b", "c"], batch=2, model_version="m2").assign(rank=[2, 3, 4])
    log = _killed_push(workspace, tmp_path, queue, boxes, waiting)
    assert "paused at labelstudio.push.after_tasks" in log
    # precondition: killed half-way: new tasks in, waiting tiles without m2, project still on m1
    assert on_server(workspace) == dict.fromkeys("abcde", 1)
    assert _predictions(workspace) == {"a": ["m1"], "b": ["m1"], "c": ["m1"], "d": ["m2"], "e": ["m2"]}
    assert backend.client.projects.get(backend.project_id()).model_version == "m1"

    again = backend.push(queue, boxes, waiting)
    assert (again.created, again.updated, again.unchanged) == (0, 2, 3), "d, e in; a, b refreshed; c labeled"
    assert on_server(workspace) == dict.fromkeys("abcde", 1)
    expected = {"a": ["m1", "m2"], "b": ["m1", "m2"], "c": ["m1"], "d": ["m2"], "e": ["m2"]}
    assert _predictions(workspace) == expected
    assert backend.client.projects.get(backend.project_id()).model_version == "m2"
    third = backend.push(queue, boxes, waiting)
    assert (third.created, third.updated, third.unchanged) == (0, 0, 5)
    assert _predictions(workspace) == expected
    pulled = backend.pull()
    assert pulled.annotations["tile_id"].tolist() == ["c"], "the label made before the kill is kept"


@pytest.mark.slow
def test_rank_killed_mid_push_then_repro_makes_each_task_and_prediction_once(
    ls_server, tiny_template, tmp_path
):
    """`dvc repro` with Label Studio as the backend, SIGKILLed inside rank's push with the tasks
    imported and the rest of the push (predictions for waiting tiles, the project's model version)
    not yet done; then `dvc repro` again."""
    import shutil
    import subprocess

    from tests.conftest import tool_env, write_params
    from tests.test_faults import kill_group, paused_at, start, wait_until

    root = ls_server.document_root / "killed-push-repo"
    shutil.copytree(tiny_template, root, symlinks=True)
    title = "killed push"
    labeling = {"backend": "label-studio", "project": title, "document_root": str(ls_server.document_root)}
    write_params(root, {"labeling": labeling})
    conn = ls_server.connection()
    env = {"LABEL_STUDIO_URL": conn.url, "LABEL_STUDIO_API_KEY": conn.api_key}
    backend = LabelStudioBackend(
        ["squirrel"], repo_root=root, title=title, document_root=ls_server.document_root, **_as_args(env)
    )

    log = tmp_path / "killed.log"
    proc = start(["dvc", "repro"], root, log, ACORN_TEST_PAUSE_AT="labelstudio.push.after_tasks", **env)
    wait_until(paused_at("labelstudio.push.after_tasks", log), proc, log, timeout=900)
    kill_group(proc)
    pid = backend.project_id(create=False)
    killed = {t.data["tile_id"]: t for t in backend.client.tasks.list(project=pid, fields="all")}
    assert len(killed) == 4, "precondition: the batch's tasks were imported before the kill"
    assert not (root / "data/queue.csv").exists()

    again = subprocess.run(
        ["dvc", "repro"], cwd=root, env={**tool_env(root), **env}, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    queue = pd.read_csv(root / "data/queue.csv")
    tasks = list(backend.client.tasks.list(project=pid, fields="all"))
    assert Counter(t.data["tile_id"] for t in tasks) == dict.fromkeys(queue["tile_id"], 1)
    assert set(killed) == set(queue["tile_id"]), "the re-run queued the same batch"
    [version] = queue["model_version"].unique()
    for task in tasks:
        assert [p.model_version for p in task.predictions] == [version], task.data["tile_id"]
        assert task.id == killed[task.data["tile_id"]].id, "the task made before the kill is the one kept"
    assert backend.client.projects.get(pid).model_version == version
    status = subprocess.run(
        ["dvc", "status", "rank"], cwd=root, env=tool_env(root), capture_output=True, text=True
    )
    assert "up to date" in status.stdout, status.stdout


def _as_args(env: dict[str, str]) -> dict[str, str]:
    return {"url": env["LABEL_STUDIO_URL"], "api_key": env["LABEL_STUDIO_API_KEY"]}
