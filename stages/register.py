"""register: models/model.pt + metrics/train.json -> an MLflow model version, models/champion.pt.

Alias challenger always, champion only if it beats the current one on the validation set
(``val_<register.metric>`` of metrics/train.json: the test set only reports, it chooses nothing);
models/champion.pt is the champion's weights, which predict and the pre-annotations use (acorn.model.registry). A re-run after a
kill or a store failure reuses or cleans up what the cut-short run left, never duplicates it.
"""

import json
import logging

from acorn import paths
from acorn.model.detection import detector_settings
from acorn.model.registry import download_weights, file_sha256, record_dict, register
from acorn.params import Params
from acorn.runtime.atomic import copy_file, write_json
from acorn.runtime.entrypoint import run_stage

log = logging.getLogger("acorn")


def register_model(p: Params) -> None:
    metrics = json.loads(paths.TRAIN_METRICS.read_text(encoding="utf-8"))
    gate = f"val_{p.register.metric}"
    record = register(
        paths.MODEL, metrics, p.register.model_name, gate, detector_settings(p), margin=p.register.margin
    )
    if record.champion_version == record.version:
        copy_file(paths.MODEL, paths.CHAMPION)
    elif not (
        paths.CHAMPION.is_file()
        and record.champion_weights_sha256
        and file_sha256(paths.CHAMPION) == record.champion_weights_sha256
    ):
        download_weights(record.name, record.champion_version, paths.CHAMPION)
    write_json(paths.REGISTRY, record_dict(record))
    log.info(
        "registered %s version %d (%s %.3f); champion is version %d",
        record.name,
        record.version,
        record.metric,
        record.value,
        record.champion_version,
    )


if __name__ == "__main__":
    run_stage(register_model)
