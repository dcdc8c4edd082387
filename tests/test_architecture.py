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
    1: {"errors", "ids", "values", "encoders", "tables", "bundle", "metrics", "fileio", "devices"},
    2: {"data", "models", "scoring", "datasets"},
    3: {"embeddings", "spark", "dask"},
    4: {"runs"},
    5: {"training", "export"},
    6: {"tuning"},
    7: {"cli"},
    8: {"demo", "__init__", "__main__"},
}
FLOOR_OF = {name: floor for floor, names in FLOORS.items() for name in names}
FLOOR_1 = FLOORS[1]
TORCH_FREE = FLOOR_1 | {"scoring", "data", "datasets", "embeddings", "spark", "dask", "cli", "__init__",
                        "__main__"}

# module -> the recmodels modules it may import: those on lower floors, narrowed where a floor must
# not see all of those below it
ALLOWED = {name: {m for m, f in FLOOR_OF.items() if f < floor} for name, floor in FLOOR_OF.items()}
ALLOWED.update({
    "errors": set(),
    "ids": set(),
    "values": {"errors", "ids"},
    "fileio": {"errors"},
    "encoders": {"errors", "ids", "fileio"},
    "tables": {"errors", "fileio"},
    "bundle": {"errors", "ids", "encoders", "fileio"},
    "metrics": {"errors"},
    "devices": {"errors"},
    "scoring": FLOOR_1,  # the nightly install: never models, data, training or export
    "data": FLOOR_1,
    "models": FLOOR_1,
    "datasets": FLOOR_1,
    "embeddings": FLOOR_1 | {"data"},
    "spark": FLOOR_1 | {"scoring"},  # engines stand on the torch-free scoring core only
    "dask": FLOOR_1 | {"scoring"},
    "runs": FLOOR_1 | {"models"},
    "export": FLOOR_1 | {"models", "runs"},
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
