"""Bad inputs the other test files do not try (docs/guarantees.md, "Bad inputs", lists them all).

params.yaml values outside the rank section, and a params.yaml that is not YAML at all: each
is refused when params load, with one message naming the file, the key and what is allowed.
"""

from __future__ import annotations

import pytest

from acorn.params import ParamsError, load_params


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "tile:\n  on_bad_frame: ignore\n",
            "tile.on_bad_frame: Input should be 'skip' or 'stop' (got 'ignore')",
        ),
        (
            "labeling:\n  backend: cvat\n",
            "labeling.backend: Input should be 'oracle' or 'label-studio' (got 'cvat')",
        ),
        (
            "model:\n  imgsz: 95\n",
            "model.imgsz: Input should be a multiple of 32 (got 95); allowed: an integer >= 32",
        ),
        (
            "register:\n  metric: f1\n",
            "register.metric: Input should be 'map50', 'map50_95', 'precision' or 'recall'",
        ),
        ("classes: [squirrel, squirrel]\n", "classes: class names must be unique"),
        ("classes: []\n", "classes: List should have at least 1 item"),
        ("- tile\n- rank\n", "the top level must be a mapping of sections"),
        ("tile: [\n  rows: 3\n", "not valid YAML"),
    ],
)
def test_bad_params_values_name_the_file_the_key_and_what_is_allowed(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
