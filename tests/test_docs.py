"""Every command has help text and a documentation page; documented links resolve."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from recmodels.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = {
    "train": "docs/training.md",
    "export": "docs/export.md",
    "score": "docs/scoring.md",
    "recommend": "docs/recommend.md",
    "evaluate": "docs/evaluate.md",
    "info": "docs/data.md",
    "tune": "docs/tuning.md",
}


def test_every_command_is_mapped_to_a_page():
    assert set(DOC_PAGES) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"], prog_name="recmodels")
    assert result.exit_code == 0, result.output
    assert "Usage: recmodels " + command in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 20, f"`recmodels {command} --help` has no real description"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_has_docs_page(command):
    page = ROOT / DOC_PAGES[command]
    assert page.is_file(), f"{page} missing"
    assert f"recmodels {command}" in page.read_text()


def test_root_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"], prog_name="recmodels")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    for target in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (ROOT / target).is_file(), f"README links to missing {target}"


def _quoted_modules(text: str) -> set[str]:
    """Dotted ``recmodels.x.y`` names in a page, without a trailing attribute that is not a module."""
    return set(re.findall(r"\brecmodels(?:\.[a-z_][a-z_0-9]*)+", text))


@pytest.mark.parametrize("page", ["docs/architecture.md", "docs/distributed.md", "docs/scoring.md",
                                  "docs/recommend.md", "docs/evaluate.md", "docs/python-api.md"])
def test_quoted_code_paths_and_imports_exist(page):
    """Every ``recmodels/...`` path a page quotes exists, and every ``recmodels.x.y`` it names imports
    (as a module, or as an attribute of the module before it)."""
    import importlib

    text = (ROOT / page).read_text()
    missing = []
    for path in set(re.findall(r"\brecmodels/[A-Za-z_0-9/]+(?:\.py)?", text)):
        if not (ROOT / path).exists() and not (ROOT / f"{path}.py").exists():
            missing.append(path)
    # bare file names listed under a folder in the floor plan: "scorer.py" etc. must exist somewhere
    examples = {"nightly_scores.py"}  # a user's own script in an example
    for name in set(re.findall(r"\b([a-z_][a-z_0-9]*\.py)\b", text)) - examples:
        if not any(any((ROOT / d).rglob(name)) for d in ("recmodels", "benchmarks", "tests")):
            missing.append(name)
    for dotted in _quoted_modules(text):
        parts = dotted.split(".")
        try:
            importlib.import_module(dotted)
            continue
        except ImportError:
            pass
        try:
            module = importlib.import_module(".".join(parts[:-1]))
        except ImportError:
            missing.append(dotted)
            continue
        if not hasattr(module, parts[-1]):
            missing.append(dotted)
    assert not missing, f"{page} quotes what does not exist: {sorted(missing)}"
