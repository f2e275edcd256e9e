"""tile: data/raw frames (+ frame-level boxes) -> data/tiles: tiles, clipped truth labels, manifest.

Only new or changed frames are tiled (acorn.tiling).
"""

from acorn.cli import run_stage
from acorn.pipeline import tile

if __name__ == "__main__":
    run_stage(tile)
