"""``acorn doctor``: is this repository set up to run a cycle? One line per check, with the fix.

Without it a new set-up fails one problem at a time, minutes apart: ``dvc repro`` tiles every
frame before the train stage finds that the base model knows other classes, and a Label Studio
that is down shows up only when rank pushes. The checks read files and ask the labeling server
for ``/health``; they change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from acorn import paths
from acorn.data.repo_uris import is_repo_uri
from acorn.data.tiling import IMAGE_SUFFIXES
from acorn.params import Params, load_params
from acorn.runtime.errors import AcornError

OK, WARN, FAIL = "ok", "warn", "FAIL"
SAMPLE_FRAMES = 5  # decoded to prove the frames are readable; a full pass is the tile stage's job
HEALTH_TIMEOUT_S = 3.0  # a server that takes longer than this will not keep up with a push either


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN (works, but probably not as meant) or FAIL (a cycle will not run)
    detail: str  # what was found, or the problem and how to fix it

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<9} {self.detail}"


def run_checks(params_path: Path, root: Path) -> bool:
    """Print one line per check of the repository at ``root``; True when nothing failed.

    ``params_path`` is relative to ``root`` unless absolute.
    """
    failed = False
    for check in checks(root / params_path, root):
        print(check.line(), flush=True)
        failed |= check.status == FAIL
    return not failed


def checks(params_path: Path, root: Path) -> Iterator[Check]:
    """Each check in the order a cycle needs it; the rest are skipped when params do not load."""
    try:
        p = load_params(params_path)
    except AcornError as exc:
        yield Check("params", FAIL, f"{exc} (the other checks need valid params)")
        return
    yield Check("params", OK, f"{params_path} is valid; classes {p.classes}")
    frames = _frame_files(root)
    yield _frames(root, frames)
    yield _classes(root, p)
    yield _base_model(root, p)
    yield _test_set(root, p)
    yield _leaks(root, p)
    yield _val_set(root, p)
    yield _replay(root, p)
    if p.rank.balance_by:
        yield _balance(root, p)
    yield _labeling(root, p, frames)
    if p.labeling.backend == "label-studio":
        yield _document_root(root, p)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def _labeled(images: list[Path], folder: Path) -> int:
    """How many of ``folder/images`` have a YOLO label file at the same place under ``folder/labels``."""
    return sum(
        (folder / "labels" / i.relative_to(folder / "images")).with_suffix(".txt").is_file() for i in images
    )


def _frame_files(root: Path) -> list[Path]:
    return _images(root / paths.RAW / "images")


def _frames(root: Path, frames: list[Path]) -> Check:
    from PIL import Image

    folder = root / paths.RAW / "images"
    if not frames:
        found = "no such folder" if not folder.is_dir() else "no images in it"
        return Check(
            "frames",
            FAIL,
            f"{folder}: {found}; put your frames there ({', '.join(sorted(IMAGE_SUFFIXES))}; "
            "subfolders allowed) and track them with `dvc add data/raw`",
        )
    sample = frames[:: max(1, len(frames) // SAMPLE_FRAMES)][:SAMPLE_FRAMES]
    sizes = set()
    for frame in sample:
        try:
            with Image.open(frame) as image:
                image.load()
                sizes.add(image.size)
        except Exception as exc:  # PIL raises many types for a bad file; the file is what to report
            return Check("frames", FAIL, f"{frame}: cannot read it as an image ({exc}); replace or remove it")
    shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
    return Check("frames", OK, f"{len(frames)} frames in {folder}; {len(sample)} sampled read fine ({shown})")


def _classes(root: Path, p: Params) -> Check:
    from acorn.data.formats import read_classes

    names_file = root / paths.RAW / "classes.txt"
    if not names_file.exists():
        return Check("classes", OK, f"no {names_file}: label class ids are positions in params classes")
    raw = read_classes(names_file)
    unknown = [n for n in raw if n not in p.classes]
    if unknown:
        return Check(
            "classes",
            FAIL,
            f"{names_file}: class {unknown[0]!r} is not in params classes {p.classes}; "
            "add it to classes in params.yaml or relabel",
        )
    order = "same order" if raw == p.classes else "matched by name"
    return Check("classes", OK, f"{names_file} {raw} agrees with params classes ({order})")


def _base_model(root: Path, p: Params) -> Check:
    from acorn.model.detection import check_model_classes

    weights = root / p.model.base
    if not weights.is_file():
        return Check(
            "model",
            FAIL,
            f"{weights}: not found; put your starting detector (an ultralytics .pt) there or set model.base",
        )
    try:
        check_model_classes(weights, p.classes)
    except AcornError as exc:
        return Check("model", FAIL, str(exc))
    except Exception as exc:  # a truncated or foreign file fails inside torch/ultralytics in many ways
        return Check(
            "model",
            FAIL,
            f"{weights}: cannot load it as a YOLO model ({type(exc).__name__}: {exc}); model.base "
            "must be an ultralytics .pt",
        )
    return Check("model", OK, f"{weights} (model.base) detects params classes {p.classes}")


def _test_set(root: Path, p: Params) -> Check:
    folder = root / p.test.data
    images = _images(folder / "images")
    if not images:
        return Check(
            "test set",
            FAIL,
            f"{folder}/images: no images; test.data is a fixed labeled set in YOLO layout "
            "(images/, labels/) that scores every cycle's model",
        )
    labeled = _labeled(images, folder)
    if not labeled:
        return Check(
            "test set",
            FAIL,
            f"{folder}/labels: no label file for any of {len(images)} test images; every score would be 0",
        )
    return Check("test set", OK, f"{folder}: {len(images)} images, {labeled} with a label file")


def _leaks(root: Path, p: Params) -> Check:
    """Test frames that are near-copies of pool frames (a webcam's frames a minute apart, one on
    each side): the model trains on one and is scored on the other, and the test score flatters
    it. Pool frames are hashed from the tile stage's manifest where it has them, the rest (and the
    test frames) from their files, as the tile stage hashes them (``acorn.data.near_copies``)."""
    import pandas as pd
    from tqdm import tqdm

    from acorn.data.near_copies import HASH_COLUMN, leaks
    from acorn.data.tiling import frame_hash, list_frames

    folder = root / p.test.frames if p.test.frames else None
    test_frames, test_ids = (
        list_frames(folder / "images") if folder and (folder / "images").is_dir() else ([], [])
    )
    if not test_frames:
        where = f"{folder}/images" if folder else "test.frames is ''"
        return Check(
            "leaks",
            OK,
            f"no whole test frames ({where}): test frames that are near-copies of pool frames are not "
            "looked for; set test.frames to a YOLO folder of the test set's frames to check",
        )
    pool_frames, pool_ids = (
        list_frames(root / paths.RAW / "images") if (root / paths.RAW / "images").is_dir() else ([], [])
    )
    manifest = root / paths.TILES / "manifest.parquet"
    known: dict[str, str] = {}
    if manifest.is_file():
        table = pd.read_parquet(manifest)
        if HASH_COLUMN in table:
            known = table.drop_duplicates("frame_id").set_index("frame_id")[HASH_COLUMN].dropna().to_dict()

    def hashed(frames: list[Path], ids: list[str], known: dict[str, str], desc: str) -> pd.DataFrame:
        rows = []
        for path, frame_id in zip(tqdm(frames, desc=desc, unit="frame", leave=False), ids, strict=True):
            try:
                rows.append((frame_id, path, known.get(frame_id) or frame_hash(path)))
            except Exception:  # unreadable: the frames check (pool) or the tile stage names it
                continue
        return pd.DataFrame(rows, columns=["frame_id", "path", "hash"]).set_index("frame_id", drop=False)

    pool = hashed(pool_frames, pool_ids, known, "hash pool frames")
    test = hashed(test_frames, test_ids, {}, "hash test frames")
    bits = p.tile.near_copy_bits
    found = leaks(
        test.index.tolist(), test["hash"].tolist(), pool.index.tolist(), pool["hash"].tolist(), bits
    )
    if found.empty:
        return Check(
            "leaks",
            OK,
            f"none of {len(test)} test frames in {folder} is a near-copy of the {len(pool)} pool "
            f"frames (tile.near_copy_bits {bits})",
        )
    shown = "; ".join(
        f"{test.at[r.test, 'path']} ~ {pool.at[r.pool, 'path']} ({r.bits} bits)"
        for r in found.head(5).itertuples()
    )
    return Check(
        "leaks",
        WARN,
        f"{len(found)} of {len(test)} test frames are near-copies of pool frames (within "
        f"tile.near_copy_bits {bits} bits), nearest first: {shown}; the model would be scored on "
        "frames it trained on: move those test frames (and their tiles in test.data) out of the "
        "test set, or their copies out of data/raw",
    )


def _val_set(root: Path, p: Params) -> Check:
    """The fixed validation set: early stopping and the champion gate read it, so without it no
    cycle trains, and one that is the test set makes the test set choose what it then reports."""
    folder = root / p.val.data
    images = _images(folder / "images")
    if not images:
        return Check(
            "val set",
            FAIL,
            f"{folder}/images: no images; val.data is a fixed labeled set in YOLO layout (images/, "
            "labels/), apart from the tiles you label and from the test set, that chooses each "
            "cycle's epoch and the champion (e.g. the tiles of a few frames held out like the test set)",
        )
    if (root / p.val.data).resolve() == (root / p.test.data).resolve():
        return Check(
            "val set",
            FAIL,
            f"{folder}: val.data is the test set (test.data); the test set would choose the model it "
            "then scores: give the validation set frames of its own",
        )
    labeled = _labeled(images, folder)
    if not labeled:
        return Check(
            "val set",
            FAIL,
            f"{folder}/labels: no label file for any of {len(images)} validation images; every "
            "validation score would be 0 and nothing could be chosen on it",
        )
    return Check("val set", OK, f"{folder}: {len(images)} images, {labeled} with a label file")


def _replay(root: Path, p: Params) -> Check:
    from acorn.model.training import replay_pairs

    setting = p.train.replay_data
    folder = root / setting
    if not folder.is_dir():
        return Check(
            "replay",
            FAIL,
            f"{folder}: missing, and the train stage depends on it (train.replay_data); create it "
            "(an empty folder means no replay), or point train.replay_data at a YOLO folder of the base model's domain",
        )
    if p.train.replay_images == 0 or not _images(folder / "images"):
        return Check("replay", OK, f"none ({setting}): fine-tunes use the labeled tiles alone")
    try:
        pairs = replay_pairs(folder, p.train.replay_images)
    except AcornError as exc:
        return Check("replay", FAIL, str(exc))
    return Check("replay", OK, f"{len(pairs)} images of {folder} mixed into every fine-tune")


def _balance(root: Path, p: Params) -> Check:
    """rank.balance_by names a column of data/raw/metadata.csv; a column the frames lack would
    balance by nothing and say nothing."""
    import pandas as pd

    column, metadata = p.rank.balance_by, root / paths.RAW / "metadata.csv"
    columns = list(pd.read_csv(metadata, nrows=0).columns) if metadata.is_file() else []
    if column in columns:
        return Check("balance", OK, f"rank.balance_by {column!r}: a column of {metadata}")
    has = f"its columns: {', '.join(columns)}" if columns else "no such file"
    return Check(
        "balance",
        FAIL,
        f"rank.balance_by {column!r} is not a column of {metadata} ({has}); name one of its columns, "
        "or set rank.balance_by: '' (the default) to balance by nothing",
    )


def _labeling(root: Path, p: Params, frames: list[Path]) -> Check:
    if p.labeling.backend == "oracle":
        labels = root / paths.RAW / "labels"
        labeled = _labeled(frames, root / paths.RAW)
        if not labeled:
            return Check(
                "labeling",
                WARN,
                f"oracle: no frame labels in {labels}, so `acorn annotate` has nothing to label from; "
                "add YOLO labels there or set labeling.backend: label-studio",
            )
        return Check("labeling", OK, f"oracle: labels from {labeled} of {len(frames)} frames in {labels}")
    from acorn.labeling.labelstudio.client import health_problem, resolve_connection

    try:
        connection = resolve_connection(repo_root=root)
    except AcornError as exc:
        return Check("labeling", FAIL, f"label-studio: {exc}")
    problem = health_problem(connection.url, timeout=HEALTH_TIMEOUT_S)
    if problem is not None:
        return Check(
            "labeling",
            FAIL,
            f"label-studio: cannot reach {connection.url} ({problem}); start it with "
            "`acorn labelstudio start` or set LABEL_STUDIO_URL",
        )
    return Check("labeling", OK, f"label-studio at {connection.url} answers /health")


def _document_root(root: Path, p: Params) -> Check:
    """Label Studio serves local images only from under its document root: tiles outside it are
    tasks whose images never load in the browser."""
    setting = p.labeling.document_root
    if is_repo_uri(setting):  # DagsHub's hosted Label Studio: tasks name tiles by repo:// URI
        return Check("doc root", OK, f"{setting}: tasks name tiles by repo:// URI, no local files served")
    document_root = (root / setting).resolve() if setting else root.resolve()
    tiles = (root / paths.TILES).resolve()
    if not tiles.is_relative_to(document_root):
        return Check(
            "doc root",
            FAIL,
            f"labeling.document_root {document_root} does not contain the tiles folder {tiles}; set it "
            "(and the server's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) to a folder above it, or to '' "
            "for this repository",
        )
    return Check("doc root", OK, f"{document_root} contains the tiles folder {tiles}")
