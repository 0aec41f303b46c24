"""Dataset discovery on the real shared data (and small replicas where the shared copy differs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.core import UserError
from protocols.datasets import load_items


def test_real_layouts(shared: Path) -> None:
    data = shared / "data"
    assert [i.name for i in load_items("set5", data)] == ["baby", "bird", "butterfly", "head", "woman"]
    assert len(load_items("set14", data)) == 14
    assert len(load_items("urban100", data)) == 25
    wrsr = load_items("wrsr", data)
    assert len(wrsr) == 80 and Path(dict(wrsr[0].refs)["pair"]).name == "001_ref.png"
    sun80 = load_items("sun80", data)  # the shared copy is the flat HR folder Sun_Hays80/ (no scene matches)
    assert len(sun80) == 80 and all(not item.candidates for item in sun80)


def test_flickr1024_pair_naming(shared: Path, tmp_path: Path) -> None:
    (tmp_path / "Flickr1024").symlink_to(shared / "data" / "Flickr1024_sample" / "Train")
    (item,) = load_items("flickr1024", tmp_path)
    assert item.name == "0026" and Path(item.hr).name == "0026_L.png"
    assert Path(dict(item.refs)["pair"]).name == "0026_R.png"


def test_flickr1024_missing_right_view(tmp_path: Path) -> None:
    folder = tmp_path / "Flickr1024" / "Test"
    folder.mkdir(parents=True)
    (folder / "0001_L.png").write_bytes(b"")
    with pytest.raises(UserError, match="0001_R.png"):
        load_items("flickr1024", tmp_path)


def test_no_data_root_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFSR_DATA", raising=False)
    with pytest.raises(UserError, match="REFSR_DATA"):
        load_items("urban100", None)
