import pytest

from acorn.params import ParamsError, load_params


def test_repository_params_load():
    p = load_params("params.yaml")
    assert p.tile.rows * p.tile.cols == 24
    assert p.classes == ["squirrel"]


@pytest.mark.parametrize(
    "text,field",
    [
        ("tile:\n  rowz: 3\n", "tile.rowz"),
        ("rank:\n  budget: many\n", "rank.budget"),
        ("train: 3\n", "train"),
    ],
)
def test_bad_params_name_the_field(tmp_path, text, field):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=rf"params.yaml: .*{field}"):
        load_params(path)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nothere.yaml"):
        load_params(tmp_path / "nothere.yaml")
