"""The import graph between livedata's packages follows the layer order stated in
``livedata/__init__.py``: no cycle, between packages or between the modules of one
package, and no arrow from a lower layer to a higher one.

Every import is read from the source (``ast``), wherever it stands: at the top, inside a
function, under ``TYPE_CHECKING``. A lazy import is still knowledge of the module above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import livedata

SRC = Path(livedata.__file__).parent

#: Lowest first. A module may import its own package and packages of lower layers only
#: (packages in one layer are peers: they do not import each other). A top-level module
#: (``livedata/conf.py``) is a package of its own here.
LAYERS: list[set[str]] = [
    {"conf", "dbthreads", "memory", "ddp", "dbconfig", "embedded"},  # import nothing of ours
    {"dbwait"},
    {"capture"},
    {"runtime", "exposure"},  # peers: neither imports the other
    {"publish"},
    {"accounts"},
    {"httpapi"},
    {"livequery", "webhooks", "pull", "metrics"},
    {"dashboard"},  # reads the consumers above; the server routes its publication
    {"server"},
    {"admin", "checks", "models", "urls", "api", "migrations"},  # Django's entry points
    {"apps"},  # the app config: wires the above at start-up
    {"management"},
    {"cli", "demo"},
    {"__main__"},
]

#: Arrows that break the order today, each with why it is left: (importer file, module).
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(module: str) -> bool:
    path = SRC.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``livedata.*`` module ``path`` imports: (line, module). ``from package import
    name`` imports the submodule ``package.name`` when there is one, else ``package``."""
    name = _module_name(path)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else module))
    return [(line, m) for line, m in found if m.startswith("livedata.")]


def _arrows() -> list[tuple[str, str, str, int, str]]:
    """(from package, to package, file, line, imported module), between packages."""
    arrows = []
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        source = _package(name) if "." in name else "__init__"
        for line, module in _imports(path):
            target = _package(module)
            if target != source:
                arrows.append((source, target, str(path.relative_to(SRC.parent)), line, module))
    return arrows


def _layer_of() -> dict[str, int]:
    return {package: i for i, layer in enumerate(LAYERS) for package in layer}


def test_every_package_has_a_layer():
    packages = {_package(_module_name(p)) for p in SRC.rglob("*.py") if p.parent != SRC}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    missing = sorted(packages - set(_layer_of()))
    assert not missing, f"packages without a layer in tests/test_layers.py: {missing}"


def test_imports_point_down_the_layers():
    layer = _layer_of()
    wrong = []
    for source, target, file, line, module in _arrows():
        if layer.get(target, -1) < layer.get(source, -1):
            continue
        if (file, module) in KNOWN_EXCEPTIONS:
            continue
        how = "in the same layer as" if layer.get(target) == layer.get(source) else "above"
        wrong.append(f"{file}:{line} imports {module} ({target} is {how} {source})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_known_exceptions_still_exist():
    """An exception removed from the code must be removed from the list too."""
    present = {(file, module) for _, _, file, _, module in _arrows()}
    stale = sorted(set(KNOWN_EXCEPTIONS) - present)
    assert not stale, f"known exceptions no longer in the code: {stale}"


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for source, target, *_ in _arrows():
        graph.setdefault(source, set()).add(target)
    cycles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "cycles between packages:\n" + "\n".join(cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def test_no_cycle_between_modules():
    """Inside a package too: a module never imports, however indirectly, one that
    imports it back (imports in functions and under ``TYPE_CHECKING`` count). An arrow
    goes to the module named, not to the packages above it that Python runs first."""
    graph = {}
    for path in sorted(SRC.rglob("*.py")):
        name = _module_name(path)
        graph[name] = {module for _, module in _imports(path)} - {name}
    found = []
    for component in _strongly_connected(graph):
        members = set(component)
        arrows = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        found.append(", ".join(component) + "\n    " + "\n    ".join(arrows))
    assert not found, "import cycles between modules:\n" + "\n".join(found)
