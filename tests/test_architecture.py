"""Imports point down (docs/architecture.md): checked on the source, not by convention.

Every module under ``recmodels/`` must be placed on a floor here; a new one that is not fails
``test_every_module_is_placed_on_a_floor`` until it is.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recmodels"

# floor -> the top-level names under recmodels/ that stand on it (a package's modules share its floor)
FLOORS = {
    1: {"_lazy", "errors", "ids", "values", "encoders", "tables", "bundle", "metrics", "fileio", "devices"},
    2: {"data", "models", "scoring", "datasets"},
    3: {"embeddings", "engines"},
    4: {"runs", "spark", "dask"},
    5: {"training", "export"},
    6: {"tuning"},
    7: {"cli"},
    8: {"demo", "__init__", "__main__"},
}
FLOOR_OF = {name: floor for floor, names in FLOORS.items() for name in names}
FLOOR_1 = FLOORS[1]
TORCH_FREE = FLOOR_1 | {"scoring", "data", "datasets", "embeddings", "engines", "spark", "dask", "cli",
                        "__init__", "__main__"}

# module -> the recmodels modules it may import: those on lower floors, narrowed where a floor must
# not see all of those below it
ALLOWED = {name: {m for m, f in FLOOR_OF.items() if f < floor} for name, floor in FLOOR_OF.items()}
ALLOWED.update({
    "_lazy": set(),  # what a package's lazy __getattr__ is made of: importable by every floor
    "errors": set(),
    "ids": set(),
    "values": {"errors", "ids"},
    "fileio": {"errors"},
    "encoders": {"errors", "ids", "fileio"},
    "tables": {"errors", "fileio"},
    "bundle": {"_lazy", "errors", "ids", "encoders", "fileio"},
    "metrics": {"errors"},
    "devices": {"errors"},
    "scoring": FLOOR_1,  # the nightly install: never models, data, training or export
    "data": FLOOR_1,
    "models": FLOOR_1,
    "datasets": FLOOR_1,
    "embeddings": FLOOR_1 | {"data"},
    "engines": FLOOR_1 | {"scoring"},  # engines stand on the torch-free scoring core only
    "spark": {"engines"},  # recmodels.spark / recmodels.dask: the documented paths of engines.spark / .dask
    "dask": {"engines"},
    "runs": FLOOR_1 | {"models"},
    "export": FLOOR_1 | {"models", "runs", "data", "scoring"},  # data, scoring: evaluate_run.py only
})


def _imports(path: Path, package: str) -> set[str]:
    """Top-level recmodels modules imported by ``path`` (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                names = [".".join(base + [node.module])] if node.module else [
                    ".".join(base + [a.name]) for a in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "recmodels" and len(parts) > 1 and parts[1] != "__version__":
                found.add(parts[1])
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        package = ".".join(parts[:-1])  # what a relative import in this file starts from
        top = parts[1] if len(parts) > 1 else parts[0]
        yield top, path, package


def test_every_module_is_placed_on_a_floor():
    unplaced = sorted({top for top, _, _ in _modules()} - set(FLOOR_OF))
    assert not unplaced, f"recmodels/{', '.join(unplaced)}: place it on a floor in {__file__}"


def test_a_module_that_is_not_placed_fails(tmp_path, monkeypatch):
    """The check above can fail: a stray module is reported."""
    (tmp_path / "recmodels").mkdir()
    (tmp_path / "recmodels" / "stray.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "recmodels")
    with pytest.raises(AssertionError, match="stray"):
        test_every_module_is_placed_on_a_floor()


@pytest.mark.parametrize("top", sorted(ALLOWED))
def test_imports_point_down(top):
    for name, path, package in _modules():
        if name != top:
            continue
        bad = _imports(path, package) - ALLOWED[top] - {top}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports recmodels.{', '.join(sorted(bad))}"


def test_allowed_imports_point_down():
    """Down a floor, or sideways on floor 1 where the order is explicit and has no cycle."""
    for name, allowed in ALLOWED.items():
        above = {m for m in allowed if FLOOR_OF[m] > FLOOR_OF[name]}
        sideways = {m for m in allowed if FLOOR_OF[m] == FLOOR_OF[name] and FLOOR_OF[name] != 1}
        assert not above | sideways, f"{name} (floor {FLOOR_OF[name]}) may import {above | sideways}"
    for name in FLOOR_1:  # no cycle among floor 1's explicit imports
        seen, todo = set(), list(ALLOWED[name])
        while todo:
            m = todo.pop()
            assert m != name, f"floor 1 import cycle through {name}"
            if m not in seen:
                seen.add(m)
                todo.extend(ALLOWED[m])


def test_torch_free_modules_never_import_torch_or_sklearn_at_module_level():
    for name, path, _ in _modules():
        if name not in TORCH_FREE:
            continue
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any((m or "").split(".")[0] in {"torch", "sklearn"} for m in mods), path


# Inside the two big rooms: sub-floors (a folder or module directly under the package) -> floor.
# A module may import its own sub-floor's modules and those on lower sub-floors, never higher ones.
SUB_FLOORS = {
    "scoring": {
        1: {"defaults"},                  # option defaults (imports nothing)
        2: {"checks", "unknown_ids"},     # option checks; counting unknown ids and the guard
        3: {"runtime", "output"},         # onnxruntime sessions (no ids, no files); files out
        4: {"history"},                   # fold-in of recent ratings (numpy)
        5: {"pairs"},                     # recmodels score
        6: {"recommendation"},            # recmodels recommend
        7: {"evaluation"},                # recmodels evaluate
        8: {"__init__"},
    },
    "engines": {
        1: {"contract", "connect"},  # the driver <-> worker contract; reaching a cluster
        2: {"worker"},               # what a task runs
        3: {"staging"},              # the workers' temporary parts -> the output
        4: {"driver"},               # the one driver: checks, the job around the tasks, reports
        5: {"dask", "spark"},        # only what is the engine's own
        6: {"__init__"},
    },
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_imports(path: Path) -> set[str]:
    """Every recmodels module ``path`` imports, at module level or inside functions, as dotted names
    (``from X import name`` counts ``X.name`` when that is a module, else ``X``)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    known = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                found.add(full if full in known else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known}


def test_sub_floors_are_complete():
    for room, floors in SUB_FLOORS.items():
        placed = set().union(*floors.values())
        present = {p.stem if p.is_file() else p.name for p in (PACKAGE / room).iterdir()
                   if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
        assert present <= placed, f"recmodels/{room}: place {sorted(present - placed)} on a sub-floor"


@pytest.mark.parametrize("room", sorted(SUB_FLOORS))
def test_imports_point_down_inside_rooms(room):
    floor_of = {name: f for f, names in SUB_FLOORS[room].items() for name in names}
    for path in sorted((PACKAGE / room).rglob("*.py")):
        rel = path.relative_to(PACKAGE / room).with_suffix("").parts
        mine = floor_of.get(rel[0], None)
        for target in _all_imports(path):
            parts = target.split(".")
            if parts[:2] != ["recmodels", room] or len(parts) < 3 or parts[2] == rel[0]:
                continue
            theirs = floor_of.get(parts[2])
            assert mine is not None and theirs is not None and theirs < mine, (
                f"{path.relative_to(PACKAGE.parent)} (sub-floor {mine}) imports {target} "
                f"(sub-floor {theirs})")


def test_no_import_cycle_anywhere():
    graph = {_module_name(p): _all_imports(p) for p in PACKAGE.rglob("*.py")}
    # a package's __init__ re-exporting its own modules is not a cycle; a module importing a parent
    # package's __init__ (which imports it back) is
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not (node.startswith(nxt + ".") and len(cycle) == 2):
                    raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_a_cycle_is_found(tmp_path, monkeypatch):
    """The cycle check can fail."""
    pkg = tmp_path / "recmodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="import cycle"):
        test_no_import_cycle_anywhere()


def test_an_upward_import_inside_a_room_fails(tmp_path, monkeypatch):
    pkg = tmp_path / "recmodels" / "scoring"
    for sub in ("runtime", "pairs"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "runtime" / "x.py").write_text("from ..pairs import y\n")
    (pkg / "pairs" / "y.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "recmodels")
    with pytest.raises(AssertionError, match="sub-floor 3"):
        test_imports_point_down_inside_rooms("scoring")


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines():
    """A module past 500 lines holds more than one job: split it by job (issue 20)."""
    long = {str(p.relative_to(PACKAGE.parent)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules by job (at most {MAX_MODULE_LINES} lines each): {long}"
