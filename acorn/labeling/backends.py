"""The labeling backend named in params: where the ranked queue goes and finished labels come from."""

from __future__ import annotations

from pathlib import Path

from acorn.labeling.base import LabelingBackend
from acorn.params import Params

BACKENDS = ("oracle", "label-studio")


def get_backend(p: Params, root: Path = Path()) -> LabelingBackend:
    """The backend named by ``labeling.backend``; its state lives outside the DVC DAG."""
    from acorn import paths

    if p.labeling.backend == "oracle":
        from acorn.labeling.oracle import DEFAULT_STATE_DIR, OracleBackend
        from acorn.labeling.snapshot import SNAPSHOT_DIR

        # a clone or a queued experiment has the committed snapshot but not .acorn/: start from it
        return OracleBackend(
            root / DEFAULT_STATE_DIR,
            root / paths.TRUTH,
            root / SNAPSHOT_DIR,
            display_threshold=p.rank.threshold,
            noise=p.labeling.noise,
        )
    if p.labeling.backend == "label-studio":
        from acorn.labeling.labelstudio import LabelStudioBackend

        lab = p.labeling
        return LabelStudioBackend.from_params(
            p,
            root,
            title=lab.project,
            document_root=lab.document_root or None,
            ml_backend_url=lab.ml_backend_url or None,
        )
    raise ValueError(
        f"params.yaml: labeling.backend must be one of {', '.join(BACKENDS)}; got {p.labeling.backend!r}"
    )
