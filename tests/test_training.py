"""Long training resumes: a run killed midway goes on from its last epoch with ultralytics' own
resume (real YOLO training on the tiny repository's close-ups)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import run, tool_env

from acorn import paths
from acorn.model import training
from acorn.params import load_params
from acorn.runtime.errors import InputError


def close_up_dataset(repo: Path, workdir: Path) -> Path:
    p = load_params(repo / "params.yaml")
    source = repo / paths.SOURCE
    return training.labeled_dataset(
        [i.stem for i in sorted((source / "images").glob("*.jpg"))],
        lambda i: (source / "images" / f"{i}.jpg", source / "labels" / f"{i}.txt"),
        p.classes,
        0.2,
        workdir,
    )


@pytest.mark.slow
def test_a_training_killed_midway_goes_on_from_its_last_epoch(tiny_repo: Path, tmp_path: Path) -> None:
    p = load_params(tiny_repo / "params.yaml")
    base, data = tiny_repo / p.model.base, close_up_dataset(tiny_repo, tmp_path / "data")
    config = training.TrainConfig.from_params(p, epochs=3)
    work, heard = tmp_path / "work", []
    last = work / "train" / "weights" / "last.pt"

    def killed(metrics: dict[str, float]) -> None:
        heard.append(metrics)
        raise KeyboardInterrupt("as if the process died after the first epoch")

    with pytest.raises(KeyboardInterrupt):
        training.train(base, data, config, work, on_epoch=killed, resume=True)
    assert training.checkpoint_stage(last) == "unfinished"

    # the folder moved (a copy on another machine): the checkpoint names the old place, unused now
    work.rename(tmp_path / "moved")
    work, last = tmp_path / "moved", tmp_path / "moved" / "train" / "weights" / "last.pt"
    heard.clear()
    weights = training.train(base, data, config, work, on_epoch=heard.append, resume=True)
    assert len(heard) == 2  # epochs 2 and 3: the first is not trained again
    results = pd.read_csv(work / "train" / "results.csv")
    assert results["epoch"].tolist() == [1, 2, 3]
    assert training.checkpoint_stage(last) == "finished" and not (tmp_path / "work").exists()

    heard.clear()  # finished: asked again, nothing is trained
    assert training.train(base, data, config, work, on_epoch=heard.append, resume=True) == weights
    assert heard == []

    # without resume the same folder starts over: no rows of the earlier run are left
    training.train(base, data, training.TrainConfig.from_params(p, epochs=1), work, on_epoch=heard.append)
    assert len(heard) == 1 and pd.read_csv(work / "train" / "results.csv")["epoch"].tolist() == [1]


@pytest.mark.slow
def test_checkpoints_torn_by_a_kill_are_put_back_and_the_run_goes_on(tiny_repo: Path, tmp_path: Path) -> None:
    """ultralytics writes last.pt and best.pt in place: a kill while it writes them leaves them
    torn. The run goes on from the whole copies instead of from the start, and ends with a
    readable best.pt (its final validation strips best.pt, which a torn one would fail)."""
    p = load_params(tiny_repo / "params.yaml")
    base, data = tiny_repo / p.model.base, close_up_dataset(tiny_repo, tmp_path / "data")
    config = training.TrainConfig.from_params(p, epochs=3)
    work, heard = tmp_path / "work", []
    last, best = work / "train" / "weights" / "last.pt", work / "train" / "weights" / "best.pt"

    def killed(metrics: dict[str, float]) -> None:
        heard.append(metrics)
        if len(heard) == 2:
            raise KeyboardInterrupt("as if the process died writing the third epoch's checkpoints")

    with pytest.raises(KeyboardInterrupt):
        training.train(base, data, config, work, on_epoch=killed, resume=True)
    for torn in (last, best):
        torn.write_bytes(torn.read_bytes()[:4096])  # what a write cut short leaves
    assert training.checkpoint_stage(last) is None

    heard.clear()
    weights = training.train(base, data, config, work, on_epoch=heard.append, resume=True)
    assert len(heard) == 1  # epoch 3 only: the two saved epochs are kept
    assert pd.read_csv(work / "train" / "results.csv")["epoch"].tolist() == [1, 2, 3]
    assert weights == best and training.checkpoint_stage(best) == "finished"  # whole, and stripped

    # best.pt torn as the last epoch saved it (the kill before ultralytics' end of run): put back
    # from last.pt, the same epoch's bytes, instead of training it all again
    def killed_at_the_end(_metrics: dict[str, float]) -> None:
        raise KeyboardInterrupt("as if the process died once the only epoch was saved")

    work, one = tmp_path / "one", training.TrainConfig.from_params(p, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        training.train(base, data, one, work, on_epoch=killed_at_the_end, resume=True)
    best = work / "train" / "weights" / "best.pt"
    best.write_bytes(best.read_bytes()[:4096])
    heard.clear()
    assert training.train(base, data, one, work, on_epoch=heard.append, resume=True) == best
    assert heard == [] and training.checkpoint_stage(best) is not None


@pytest.mark.slow
def test_a_kill_after_the_last_epoch_was_saved_leaves_a_finished_run(tiny_repo: Path, tmp_path: Path) -> None:
    """Killed between the last epoch's checkpoint and ultralytics' end of run (which strips it):
    nothing is left to train, and ultralytics would refuse to resume it."""
    p = load_params(tiny_repo / "params.yaml")
    base, data = tiny_repo / p.model.base, close_up_dataset(tiny_repo, tmp_path / "data")
    config = training.TrainConfig.from_params(p, epochs=1)

    def killed(_metrics: dict[str, float]) -> None:
        raise KeyboardInterrupt("as if the process died once the only epoch was saved")

    with pytest.raises(KeyboardInterrupt):
        training.train(base, data, config, tmp_path / "work", on_epoch=killed, resume=True)
    last = tmp_path / "work" / "train" / "weights" / "last.pt"
    assert training.checkpoint_stage(last) == "finished"
    heard: list[dict[str, float]] = []
    best = last.with_name("best.pt")  # the epoch kept is the best on the validation set
    assert training.train(base, data, config, tmp_path / "work", on_epoch=heard.append, resume=True) == best
    assert heard == []


def test_the_validation_of_best_pt_after_an_early_stop_is_not_an_epoch() -> None:
    """ultralytics' order (BaseTrainer._do_train, then final_eval): one on_fit_epoch_end per epoch,
    the last with ``trainer.stop`` set, then one more for best.pt numbered epoch + 1, which is below
    ``epochs`` when early stopping ended the run (here after epoch 3 of 10)."""
    heard: list[dict[str, float]] = []
    state: dict = {}
    for epoch, stop in [(0, False), (1, False), (2, True), (3, True)]:
        trainer = SimpleNamespace(
            epoch=epoch, epochs=10, stop=stop, tloss=None, metrics={"metrics/mAP50(B)": 0.5}
        )
        training._epoch_end(trainer, state, on_epoch=heard.append)
    assert heard == [{"val/map50": 0.5}] * 3


@pytest.mark.slow
def test_train_base_killed_midway_goes_on_where_it_stopped(tiny_repo: Path) -> None:
    """A real kill (SIGKILL to the `acorn train-base` we started) once its first epoch is saved."""
    cmd = ["acorn", "train-base", "--epochs", "40", "--patience", "40"]
    last = tiny_repo / paths.WORK / "base-model" / "train" / "weights" / "last.pt"
    proc = subprocess.Popen(cmd, cwd=tiny_repo, env=tool_env(tiny_repo), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # a whole first checkpoint, not one being written
        while training.checkpoint_stage(last) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "train-base ended before it could be killed midway"
    finally:
        proc.kill()
        proc.wait()
    assert training.checkpoint_stage(last) == "unfinished"
    resumed = run(cmd, tiny_repo)
    assert "resuming the base model's training" in resumed.stderr
    trained_now = [int(n) for n in re.findall(r"epoch (\d+)/40", resumed.stderr)]
    assert trained_now and trained_now[0] > 1 and trained_now[-1] == 40  # the saved epochs kept
    curve = pd.read_csv(tiny_repo / "reports" / "base-model" / "curve.csv")
    assert curve["epoch"].tolist() == list(range(1, 41))  # one row per epoch across the kill
    assert not (tiny_repo / paths.WORK / "base-model").exists()


def test_every_labeled_item_trains_and_the_fixed_set_validates(tmp_path: Path) -> None:
    def pair(name: str, folder: Path, label: bool = True) -> tuple[Path, Path | None]:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "labels").mkdir(parents=True, exist_ok=True)
        image = folder / "images" / f"{name}.jpg"
        image.write_bytes(b"jpeg")
        if not label:
            return image, None
        (folder / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
        return image, folder / "labels" / f"{name}.txt"

    labeled = {t: pair(t, tmp_path / "pool") for t in ("a", "b", "c", "d", "e")}
    pair("v1", tmp_path / "valset")
    pair("v2", tmp_path / "valset", label=False)  # an image without objects: no label file
    (tmp_path / "valset" / "images" / "notes.txt").write_text("not an image")
    val = training.yolo_pairs(tmp_path / "valset")
    assert [(i.name, label and label.name) for i, label in val] == [("v1.jpg", "v1.txt"), ("v2.jpg", None)]
    replay = [pair("r1", tmp_path / "replay")]
    data = training.fine_tune_dataset(
        list(labeled), labeled.__getitem__, ["squirrel"], val, tmp_path / "d", replay
    )
    root = data.parent
    assert sorted(f.name for f in (root / "train" / "images").iterdir()) == [f"{t}.jpg" for t in "abcde"] + [
        "r1.jpg"
    ]
    assert sorted(f.name for f in (root / "val" / "images").iterdir()) == ["v1.jpg", "v2.jpg"]
    assert sorted(f.name for f in (root / "val" / "labels").iterdir()) == ["v1.txt"]
    with pytest.raises(InputError, match="no labeled items"):
        training.fine_tune_dataset([], labeled.__getitem__, ["squirrel"], val, tmp_path / "e")
    with pytest.raises(InputError, match="val.data"):
        training.fine_tune_dataset(["a"], labeled.__getitem__, ["squirrel"], [], tmp_path / "f")


def test_held_out_shares_are_stable_and_a_salt_makes_them_independent() -> None:
    ids = pd.Series([f"img{i:04d}" for i in range(4000)])
    plain, salted = training.held_out(ids, 0.2), training.held_out(ids, 0.2, salt="val:")
    assert plain.equals(training.held_out(ids.sample(frac=1, random_state=0), 0.2).sort_index())
    assert plain.mean() == pytest.approx(0.2, abs=0.02) and salted.mean() == pytest.approx(0.2, abs=0.02)
    # unsalted, one split would be the other; salted, they overlap as independent draws (0.2 x 0.2)
    assert (plain & salted).mean() == pytest.approx(0.04, abs=0.01)
