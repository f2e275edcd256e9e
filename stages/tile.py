"""tile: data/raw frames (+ frame-level boxes, metadata.csv) -> data/tiles: tiles, truth, manifest.

Only new or changed frames cost work; metadata is joined afresh every run (acorn.data.tiling).
"""

import logging

from acorn import paths
from acorn.data.tiling import TileGrid, tile_dataset
from acorn.params import Params
from acorn.runtime.entrypoint import run_stage

log = logging.getLogger("acorn")


def tile(p: Params) -> None:
    t = p.tile
    manifest = tile_dataset(
        paths.RAW,
        paths.TILES,
        TileGrid(t.rows, t.cols, t.overlap),
        p.classes,
        min_visibility=t.min_visibility,
        jpeg_quality=t.jpeg_quality,
        workers=t.workers,
        on_bad_frame=t.on_bad_frame,
        max_pixels=t.max_frame_pixels,
        hash_cache=paths.FRAME_HASHES,
        near_copy_bits=t.near_copy_bits,
    )
    log.info("%d tiles from %d frames in %s", len(manifest), manifest["frame_id"].nunique(), paths.TILES)


if __name__ == "__main__":
    run_stage(tile)
