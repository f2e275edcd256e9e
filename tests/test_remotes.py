"""S3 remotes for real: a DVC remote (dvc-s3) and MLflow artifacts on an S3 server on 127.0.0.1.

moto's server stands in for S3 the way dvc-s3 tests itself: ``ThreadedMotoServer`` on port 0,
a region, path-style addressing, fake keys in the environment. A tiny repository runs a cycle
with its model artifacts on S3, pushes its data, and a clone pulls it and finds nothing to do.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run, stages_run, tool_env

BUCKET = "acorn-remote"
REGION = "us-east-1"
FAKE_KEY = "acorn-test-key"  # moto accepts any key; a real one must never appear in a test


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 server on 127.0.0.1 for this module, with one bucket."""
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_KEY,
            aws_secret_access_key=FAKE_KEY,
            config=Config(s3={"addressing_style": "path"}),
        ).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint, tmp_path, monkeypatch) -> dict[str, str]:
    """What a user sets to reach S3: keys and region in the environment, path-style addressing in
    the AWS config file (read by DVC and by boto3 under MLflow), nothing from ~/.aws, no instance
    metadata look-up (it would leave 127.0.0.1)."""
    aws_config = tmp_path / "aws-config"
    aws_config.write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
    env = {
        "AWS_ACCESS_KEY_ID": FAKE_KEY,
        "AWS_SECRET_ACCESS_KEY": FAKE_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def s3_keys(endpoint: str, prefix: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def run_with(cmd: list[str], root: Path, extra: dict[str, str]) -> subprocess.CompletedProcess:
    """``conftest.run`` with ``extra`` on top of the tool environment (which drops MLFLOW_*)."""
    proc = subprocess.run(cmd, cwd=root, env=tool_env(root) | extra, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def track_inputs(root: Path) -> None:
    """Make the tiny repository a real project, whose inputs a clone or a queued experiment (a copy
    of the last commit) can get: DVC-tracked, as the README's "Your own data" says. The demo's are
    git-ignored because `acorn demo-data` regenerates them."""
    # ultralytics writes labels.cache into the test and validation sets when the train stage scores
    # them, which would change those tracked inputs
    with (root / ".dvcignore").open("a") as f:
        f.write("labels.cache\n")
    inputs = ["data/raw", "data/testset", "data/valset", "data/replay/images", "data/replay/labels"]
    run(["dvc", "add", "-q", *inputs], root)
    commit(root, "inputs")


def commit(root: Path, message: str) -> None:
    """Commit everything; data/queue.csv too (dvc.yaml keeps it in git, data/.gitignore lists it)."""
    run(["git", "add", "-A"], root)
    if (root / "data/queue.csv").exists():
        run(["git", "add", "-f", "data/queue.csv"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", message], root)


@pytest.mark.slow
def test_cycle_on_s3_then_a_clone_pulls_and_has_nothing_to_do(tiny_repo, s3_endpoint, s3_env, tmp_path):
    root = tiny_repo
    env = s3_env | {"ACORN_MLFLOW_ARTIFACTS": f"s3://{BUCKET}/mlflow"}
    run(["dvc", "remote", "add", "--default", "s3", f"s3://{BUCKET}/dvc"], root)
    run(["dvc", "remote", "modify", "s3", "endpointurl", s3_endpoint], root)
    run(["dvc", "remote", "modify", "s3", "region", REGION], root)
    track_inputs(root)

    cycle = run_with(["dvc", "repro"], root, env)
    assert "register" in stages_run(cycle)
    weights = (root / "models/champion.pt").read_bytes()
    model_keys = s3_keys(s3_endpoint, "mlflow/")
    assert any(k.endswith(".pt") for k in model_keys), model_keys
    assert not (root / "mlartifacts").exists(), "the model's artifacts went to S3, not to the repository"

    commit(root, "cycle 0")
    config = (root / ".dvc/config").read_text()
    assert FAKE_KEY not in config and s3_endpoint in config
    run_with(["dvc", "push"], root, env)
    assert s3_keys(s3_endpoint, "dvc/files/md5/")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    assert not (clone / "models/champion.pt").exists()
    run_with(["dvc", "pull"], clone, env)
    assert (clone / "models/champion.pt").read_bytes() == weights
    assert (clone / "data/tiles/manifest.parquet").read_bytes() == (
        root / "data/tiles/manifest.parquet"
    ).read_bytes()

    # nothing to pull, nothing to re-run: only export-labels, which always runs, is listed
    status = run_with(["dvc", "status", "--json"], clone, env).stdout
    assert json.loads(status) == {"export-labels": ["always changed"]}, status
    lock = (clone / "dvc.lock").read_text()
    again = run_with(["dvc", "repro"], clone, env)
    assert stages_run(again) == ["export-labels"], again.stdout
    assert (clone / "dvc.lock").read_text() == lock


@pytest.mark.slow
def test_registered_model_loads_back_from_s3(tiny_template, s3_endpoint, s3_env, tmp_path, monkeypatch):
    """Register a model with its artifacts on S3 (acorn.model.registry, as the register stage does), then
    load it back as an MLflow pyfunc and predict with it."""
    import mlflow
    import pandas as pd

    from acorn.model import registry
    from acorn.model.detection import detector_settings
    from acorn.params import load_params

    weights = tiny_template / "models/base.pt"
    settings = detector_settings(load_params(tiny_template / "params.yaml"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv(registry.ARTIFACTS_VAR, f"s3://{BUCKET}/registry")
    record = registry.register(weights, {"map50": 0.5, "cycle": 0}, "acorn-s3", "map50", settings, tmp_path)
    assert record.champion_version == 1
    assert any(k.endswith("base.pt") for k in s3_keys(s3_endpoint, "registry/"))
    assert not (tmp_path / "mlartifacts").exists()

    model = mlflow.pyfunc.load_model("models:/acorn-s3@champion")
    tile = sorted((tiny_template / "data/testset/images").iterdir())[0]
    boxes = model.predict(pd.DataFrame({"image": [str(tile)], "tile_id": ["t"]}))
    assert {"tile_id", "confidence", "x1", "y2"} <= set(boxes.columns)
    back = registry.download_weights("acorn-s3", 1, tmp_path / "back.pt", tmp_path)
    assert back.read_bytes() == weights.read_bytes()


@pytest.mark.slow
def test_dagshub_remote_config_pushes_with_the_keys_in_config_local_only(s3_endpoint, tmp_path):
    """`acorn dagshub setup`'s DVC remote, pointed at the S3 server instead of DagsHub's bucket:
    with no AWS key in the environment, `dvc push` can only have used .dvc/config.local's."""
    from acorn.ops.dagshub import DVC_PREFIX, DagsHubProfile, write_profile

    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data/frame.bin").write_bytes(b"frame")
    (root / ".gitignore").write_text(".env\n")
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "add", "-q", "data/frame.bin"], root)
    profile = DagsHubProfile(
        host="http://127.0.0.1:9",
        owner="squirrel-lab",
        repo=BUCKET,
        user="alice",
        repo_url="http://127.0.0.1:9/squirrel-lab/backyard",
        bucket_endpoint=s3_endpoint,
        label_studio_url="",
    )
    write_profile(root, profile, FAKE_KEY)
    env = {k: v for k, v in tool_env(root).items() if not k.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1",
    }
    proc = subprocess.run(["dvc", "push"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert s3_keys(s3_endpoint, f"{DVC_PREFIX}/files/md5/")


# --- a training machine pulls the labeled tiles only -----------------------------------------


@pytest.fixture(scope="module")
def pushed_pool(tmp_path_factory) -> Path:
    """A tiny project whose pool (the tile stage's output: 24 tiles and their truth), test set and
    replay set are pushed to a local DVC remote and committed; no model is needed."""
    from tests.conftest import TINY_PARAMS, copy_repo, write_params

    base = tmp_path_factory.mktemp("pool")
    root = copy_repo(base / "project")
    write_params(root, TINY_PARAMS)
    run(["acorn", "demo-data"], root)
    run(["dvc", "remote", "add", "-f", "-d", "store", str(base / "remote")], root)
    track_inputs(root)
    run(["dvc", "repro", "tile"], root)
    run(["dvc", "push"], root)
    commit(root, "pool")
    return root


def cached_objects(root: Path) -> list[Path]:
    return [f for f in (root / ".dvc/cache").rglob("*") if f.is_file() and "/runs/" not in f.as_posix()]


@pytest.mark.slow  # the tile stage and a push: ~1 min
def test_training_pulls_only_the_labeled_tiles_never_the_pool(pushed_pool, tmp_path, monkeypatch):
    import pandas as pd

    from acorn import paths
    from acorn.params import load_params
    from acorn.runtime.errors import InputError
    from stages import train as train_stage

    pool = pd.read_parquet(pushed_pool / paths.TILE_MANIFEST)
    pool_files = [f for f in (pushed_pool / paths.TILES).rglob("*") if f.is_file()]
    assert len(pool) == 24 and len(pool_files) > 40, "tiles and their truth"
    labeled = pool.iloc[[0, 7, 19]]

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(pushed_pool), str(clone)], tmp_path)
    assert not (clone / paths.TILES).exists() and not (clone / "data/testset").exists()
    monkeypatch.chdir(clone)

    files = train_stage.labeled_tiles(pd.DataFrame({"tile_id": labeled["tile_id"]}))
    here = sorted(f.relative_to(clone).as_posix() for f in (clone / paths.TILES).rglob("*") if f.is_file())
    expected = sorted([paths.TILE_MANIFEST.as_posix(), *(f"{paths.TILES}/{i}" for i in labeled["image"])])
    assert here == expected
    assert [f.read_bytes() for f in files.values()] == [
        (pushed_pool / paths.TILES / i).read_bytes() for i in labeled["image"]
    ]
    # the cache holds the pool's listing, its manifest and the three tiles: nothing else was downloaded
    assert len(cached_objects(clone)) == 1 + 1 + 3, cached_objects(clone)

    # the fixed sets a training run scores on and replays come whole, when missing
    train_stage.fetch_fixed_sets(load_params())
    for folder in ("data/testset/images", "data/replay/images", "data/replay/labels"):
        assert sorted(p.name for p in (clone / folder).iterdir()) == sorted(
            p.name for p in (pushed_pool / folder).iterdir()
        ), folder
    assert not (clone / "data/raw").exists(), "frames are not training data"

    # already here: nothing is pulled, however the remote fares
    run(["dvc", "remote", "modify", "store", "url", str(tmp_path / "nowhere")], clone)
    assert train_stage.labeled_tiles(pd.DataFrame({"tile_id": labeled["tile_id"]})) == files
    # not here and not on the remote: a clear error naming the file
    other = pool.iloc[[2]]
    with pytest.raises(InputError, match=rf"{other['image'].iloc[0]}: missing, and `dvc pull` could not get"):
        train_stage.labeled_tiles(pd.DataFrame({"tile_id": other["tile_id"]}))


# --- the demo's data: tracked, so that a clone pulls it instead of generating it -------------


def tree(folder: Path) -> dict[str, bytes]:
    return {
        f.relative_to(folder).as_posix(): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()
    }


@pytest.mark.slow  # demo data, dvc add, push, two clones: ~1 min
def test_demo_data_is_dvc_tracked_and_a_clone_pulls_it(tmp_path, monkeypatch):
    from acorn.demo.run import demo_inputs, make_demo_data, track_demo_inputs
    from acorn.params import load_params
    from tests.conftest import TINY_PARAMS, copy_repo, write_params

    for role in ("AUTHOR", "COMMITTER"):  # the identity track_demo_inputs would give a bare machine
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@localhost")
    root = copy_repo(tmp_path / "project")
    (root / "dvc.lock").unlink(missing_ok=True)  # a lock left by a run in the checkout: not pushed here
    write_params(root, TINY_PARAMS)
    run(["dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "remote")], root)
    commit(root, "project")
    p = load_params(root / "params.yaml")
    inputs = demo_inputs(p)
    assert [i.as_posix() for i in inputs] == [
        "data/raw",
        "data/testset",
        "data/testset-frames",
        "data/valset",
        "data/replay/images",
        "data/replay/labels",
    ]

    make_demo_data(p, root)
    assert track_demo_inputs(p, root), "the .dvc files are committed"
    assert not track_demo_inputs(p, root), "a second time: nothing changed, no commit"
    committed = run(["git", "show", "--name-only", "--format=%s", "HEAD"], root).stdout.split("\n")
    assert committed[0].startswith("demo data: 4 frames, 2 test frames")
    assert {f"{i}.dvc" for i in inputs} | {"data/.demo-data.json"} <= set(committed)
    assert run(["git", "status", "--porcelain", "--", "data"], root).stdout == "", "data/ is clean"
    run(["dvc", "push"], root)

    for pull_first in (True, False):
        clone = tmp_path / f"clone-{pull_first}"
        run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
        assert not (clone / "data/raw").exists()
        if pull_first:  # no cycle has run, so only the inputs have data (`dvc pull` would fail on the rest)
            run(["dvc", "pull", *(f"{i}.dvc" for i in inputs)], clone)
        out = run(["acorn", "demo-data"], clone)
        said = out.stdout + out.stderr
        assert ("nothing to do" if pull_first else "demo data pulled from DVC") in said, said
        assert "webcam pool" not in said, "nothing was generated"
        for folder in inputs:
            assert tree(clone / folder) == tree(root / folder), folder
        assert run(["dvc", "data", "status", "--not-in-remote", "--json"], clone).stdout.strip() in ("{}", "")
