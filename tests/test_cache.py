"""The minigen cache: the folder from $MINIGEN_CACHE, file names that change with
every setting, and a clear error before training when nothing can be written."""

from pathlib import Path

import pytest

from minigen.core.cache import (
    cache_folder,
    cache_path,
    check_settings,
    check_writable,
)


def test_the_folder_is_minigen_cache_else_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    assert cache_folder() == tmp_path
    monkeypatch.delenv("MINIGEN_CACHE")
    assert cache_folder() == Path.home() / ".cache" / "minigen"


def test_every_setting_changes_the_file_name(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    settings = {"steps": 10, "negatives": ("swap_colours",), "lr": 1e-3}
    path = cache_path("clip", settings)
    assert path.parent == tmp_path and path.name.startswith("clip-")
    assert path.suffix == ".pt" and len(path.stem) == len("clip-") + 12
    assert cache_path("clip", dict(settings)) == path  # same settings, same file
    for key, other in (("steps", 11), ("negatives", ()), ("lr", 2e-3)):
        assert cache_path("clip", settings | {key: other}) != path, key
    assert cache_path("oracle", settings).name[len("oracle-") :] == path.name[5:]


def test_an_unwritable_folder_is_named_in_the_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write the model into") as error:
        check_writable(blocker / "sub", "the model")
    assert error.value.filename == str(blocker / "sub")
    check_writable(tmp_path / "new" / "deeper", "the model")  # made, no error
    assert (tmp_path / "new" / "deeper").is_dir()
    assert not list((tmp_path / "new" / "deeper").iterdir())


def test_settings_must_be_those_the_file_recorded(tmp_path):
    path = tmp_path / "model.pt"
    settings = ({"steps": 5}, (1, 2))
    check_settings(path, repr(settings), settings, "a model")  # the same: no error
    with pytest.raises(ValueError, match=r"model.pt holds a model made with other"):
        check_settings(path, repr(settings), ({"steps": 6}, (1, 2)), "a model")
