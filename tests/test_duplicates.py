"""Near-copy frames: the hash, the groups, the batch limit, the test-pool leak list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from acorn.cycle_step.ranking import first_near_copies
from acorn.data.near_copies import (
    GROUP_COLUMN,
    HASH_SIDE,
    hamming,
    hash_bits,
    image_hash,
    leaks,
    near_copy_groups,
)
from acorn.data.tiling import frame_hash

SHIPPED_BITS = 32  # params.yaml tile.near_copy_bits


def scene(seed: int, size=(400, 240)) -> Image.Image:
    """A smooth random scene (a coarse random field, upsampled): structure a hash can see."""
    coarse = np.random.default_rng(seed).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def a_minute_later(image: Image.Image, seed: int) -> Image.Image:
    """Exposure up 8%, sensor noise, a small dark blob (an animal): a near-copy."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float64) * 1.08 + rng.normal(0, 4, (image.height, image.width, 3))
    pixels[100:120, 50:70] = 30
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def distance(a: str, b: str) -> int:
    return int(hamming(hash_bits([a]), hash_bits([b]))[0, 0])


def test_a_near_copy_is_within_the_threshold_and_another_scene_far_beyond():
    frame = scene(0)
    assert len(image_hash(frame)) * 4 == HASH_SIDE**2
    assert distance(image_hash(frame), image_hash(a_minute_later(frame, 1))) <= SHIPPED_BITS // 2
    assert distance(image_hash(frame), image_hash(scene(1))) > 3 * SHIPPED_BITS


def test_a_flat_frame_sets_no_bits_whatever_its_noise():
    """The edge margin: neighbour cells a level apart (flat sky, noise) are not an edge."""
    rng = np.random.default_rng(0)
    flat = Image.fromarray((120 + rng.normal(0, 3, (240, 400, 3))).clip(0, 255).astype(np.uint8))
    assert set(image_hash(flat)) == {"0"}


def test_a_jpeg_frame_hashes_alike_from_its_file_and_a_png_from_its_decode(tmp_path):
    frame = scene(2, (960, 540))
    frame.save(tmp_path / "f.jpg", quality=90)
    frame.save(tmp_path / "f.png")
    # the 1/8-scale decode is the same frame, a few bits off (up to 16 on demo frames): both the
    # tile stage and doctor hash through frame_hash, so the drift never adds to a distance
    assert distance(frame_hash(tmp_path / "f.jpg"), image_hash(frame)) <= SHIPPED_BITS
    assert frame_hash(tmp_path / "f.png") == image_hash(frame)


def _flip(h: np.ndarray, bits: range) -> np.ndarray:
    out = np.unpackbits(h).copy()
    out[list(bits)] ^= 1
    return np.packbits(out)


def test_groups_have_leaders_not_chains():
    """c is 20 bits from b and b 20 from a: chained, a slow drift would make one group of a day."""
    a = np.zeros(HASH_SIDE**2 // 8, np.uint8)
    b = _flip(a, range(0, 20))
    c = _flip(b, range(20, 40))  # 40 from a
    d = _flip(c, range(40, 45))  # 5 from c: joins c's group, not a's
    e = _flip(a, range(100, 200))
    hexes = [h.tobytes().hex() for h in (a, b, c, d, e)]
    groups = near_copy_groups(["a", "b", "c", "d", "e"], hexes, 32)
    assert groups.tolist() == ["a", "a", "c", "c", "e"]
    assert near_copy_groups(["a", "b", "c", "d", "e"], hexes, 0).tolist() == ["a", "b", "c", "d", "e"]


def test_a_batch_chooses_among_the_first_tile_of_each_place_in_rank_order():
    tiles = pd.DataFrame(
        {
            "tile_id": ["g1_r0c0", "g2_r0c0", "g1_r0c1", "g1b_r0c0", "new_r0c0", "g1c_r0c0", "old_r0c0"],
            GROUP_COLUMN: ["g1", "g2", "g1", "g1", "new", "g1", np.nan],
            "row": [0, 0, 0, 0, 0, 0, 0],
            "col": [0, 0, 1, 0, 0, 0, 0],
        }
    )
    order = tiles["tile_id"].tolist()
    # g1's tiles at (0, 0) after the first wait; (0, 1) is another place; no group: never deferred
    assert first_near_copies(tiles, 1, order).tolist() == [True, True, True, False, True, False, True]
    assert first_near_copies(tiles, 2, order).tolist() == [True, True, True, True, True, False, True]
    # the rank order, not the row order, says which copy comes first
    assert first_near_copies(tiles, 1, order[::-1]).tolist() == [False, True, True, False, True, True, True]


def test_tiles_without_a_group_are_never_deferred():
    tiles = pd.DataFrame({"tile_id": list("abc"), GROUP_COLUMN: [np.nan] * 3, "row": [0] * 3, "col": [0] * 3})
    assert first_near_copies(tiles, 1, list("abc")).all()


@pytest.mark.parametrize("pool_size", [0, 3])
def test_leaks_name_each_test_frame_with_its_nearest_pool_frame(pool_size):
    frames = [image_hash(scene(i)) for i in range(3)]
    test = [image_hash(a_minute_later(scene(1), 5)), image_hash(scene(7))]
    found = leaks(["t_copy", "t_new"], test, ["p0", "p1", "p2"][:pool_size], frames[:pool_size], SHIPPED_BITS)
    if pool_size:
        assert found[["test", "pool"]].values.tolist() == [["t_copy", "p1"]]
        assert 0 < found["bits"].iloc[0] <= SHIPPED_BITS
    else:
        assert found.empty
