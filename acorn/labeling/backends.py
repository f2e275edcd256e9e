"""The labeling backend named in params: where the ranked queue goes and finished labels come from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from acorn import paths
from acorn.labeling.base import LabelingBackend
from acorn.params import Params

if TYPE_CHECKING:
    from acorn.labeling.oracle import OracleBackend

BACKENDS = ("oracle", "label-studio")


def get_backend(p: Params, root: Path = Path()) -> LabelingBackend:
    """The backend named by ``labeling.backend``; its state lives outside the DVC DAG."""
    if p.labeling.backend == "oracle":
        return oracle_backend(p, root)
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


def oracle_backend(p: Params, root: Path = Path()) -> OracleBackend:
    """The simulated annotator, built one way for ``dvc repro``, ``acorn annotate`` and ``acorn demo``:
    answers from the ground truth, errors at ``labeling.noise``, pre-annotations shown from
    ``rank.threshold``."""
    from acorn.labeling.oracle import OracleBackend

    # a clone or a queued experiment has the committed snapshot but not .acorn/: start from it
    return OracleBackend(
        root / paths.ORACLE_STATE,
        root / paths.TRUTH,
        root / paths.LABEL_SNAPSHOT,
        display_threshold=p.rank.threshold,
        noise=p.labeling.noise,
    )
