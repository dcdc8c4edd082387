"""Imports point down (docs/architecture.md): checked on the source, not by convention."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recmodels"

FLOOR_1 = {"errors", "encoders", "bundle", "metrics", "fileio"}
# module (top-level name under recmodels) -> the recmodels modules it may import
ALLOWED = {
    **{name: FLOOR_1 for name in FLOOR_1},
    "datasets": FLOOR_1,
    "devices": FLOOR_1,
    "data": FLOOR_1,
    "embeddings": FLOOR_1 | {"data"},
    "models": FLOOR_1,
    "scoring": FLOOR_1,
    "runs": FLOOR_1 | {"models"},
    "training": FLOOR_1 | {"data", "datasets", "embeddings", "models", "devices", "runs"},
    "export": FLOOR_1 | {"models", "runs"},
}


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


@pytest.mark.parametrize("top", sorted(ALLOWED))
def test_imports_point_down(top):
    for name, path, package in _modules():
        if name != top:
            continue
        bad = _imports(path, package) - ALLOWED[top] - {top}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports recmodels.{', '.join(sorted(bad))}"


def test_scoring_and_floor_1_never_import_torch_or_sklearn_at_module_level():
    for name, path, _ in _modules():
        if name not in FLOOR_1 | {"scoring", "data", "datasets", "embeddings"}:
            continue
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any((m or "").split(".")[0] in {"torch", "sklearn"} for m in mods), path
