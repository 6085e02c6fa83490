"""What a source file imports, read with ``ast``: the tests that hold a module to its
layer or keep a core pure share this one reader (``tests/test_layers.py`` has the full
graph, with submodules resolved and line numbers)."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType


def imported_modules(source: Path | ModuleType) -> set[str]:
    """Every module named by an ``import`` or ``from ... import`` in ``source`` (a path or
    a module), wherever it stands: at the top, in a function, under ``TYPE_CHECKING``.
    Relative imports (``from . import x``) are not used in livedata and give ``""``."""
    path = Path(source.__file__) if isinstance(source, ModuleType) else source  # type: ignore[arg-type]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found
