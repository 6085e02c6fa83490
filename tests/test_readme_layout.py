"""The README's layout section names every package and top-level module of
``src/livedata``, so a part added or renamed without the README fails here."""

from __future__ import annotations

import re
from pathlib import Path

import livedata

SRC = Path(livedata.__file__).parent
README = SRC.parents[1] / "README.md"


def _layout_section() -> str:
    text = README.read_text()
    start = text.index("Layout of `src/livedata/`")
    end = text.find("\n\n", text.index("\n1. ", start))
    return text[start : end if end != -1 else len(text)]


def test_the_layout_section_names_every_part() -> None:
    parts = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert {"capture", "livequery", "conf", "__main__"} <= parts  # the folders are read
    named = set(re.findall(r"`([a-z_]+)`", _layout_section()))
    assert sorted(parts - named) == [], "parts the README's layout does not name"
