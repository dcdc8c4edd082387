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
