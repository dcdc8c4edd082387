"""``recmodels <command> --help`` imports neither pandas, pyarrow, onnxruntime nor torch.

Each command's help runs in a fresh interpreter, which then reports the heavy modules it loaded.
The options' defaults come from light modules (``recmodels.scoring.defaults``,
``recmodels.data.settings``, ``recmodels.tuning.layout``, ``recmodels.export.formats``), never
from copies; the one statement of ``CsvDialect``'s defaults in the CLI is checked against it here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recmodels.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "onnxruntime", "torch")
SCRIPT = """
import contextlib, io, json, sys
from recmodels.cli import main
out, code = io.StringIO(), 0
with contextlib.redirect_stdout(out):
    try:
        main(sys.argv[1:] + ["--help"])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "help": out.getvalue(),
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))

def run_help(*command: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *command], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = [pytest.param(name, id=name or "recmodels") for name in ["", *sorted(COMMANDS)]]


@pytest.mark.parametrize("command", CASES)
def test_help_imports_nothing_heavy(command):
    result = run_help(*([command] if command else []))
    assert result["code"] in (0, None) and "Usage: " in result["help"], result
    assert result["heavy"] == [], f"recmodels {command} --help imported {result['heavy']}"


def test_the_help_shows_the_library_defaults():
    from recmodels.scoring.defaults import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_K,
        DEFAULT_MAX_UNKNOWN_SHARE,
        DEFAULT_NEGATIVES,
        DEFAULT_PART_USERS,
        DEFAULT_TOP_K,
    )

    score, recommend, evaluate = (run_help(c)["help"] for c in ("score", "recommend", "evaluate"))
    flat = {name: " ".join(text.split()) for name, text in
            (("score", score), ("recommend", recommend), ("evaluate", evaluate))}
    assert f"default {DEFAULT_BATCH_SIZE} on CPU" in flat["score"]
    assert f"[default: {DEFAULT_MAX_UNKNOWN_SHARE}; 0<=x<=1]" in flat["score"]
    assert f"Items per user. [default: {DEFAULT_TOP_K}]" in flat["recommend"]
    assert f"users per part file (default {DEFAULT_PART_USERS})" in flat["recommend"]
    assert f"HR@K and NDCG@K. [default: {DEFAULT_K}]" in flat["evaluate"]
    assert f"[default: {DEFAULT_NEGATIVES}]" in flat["evaluate"]


def test_a_heavy_import_is_seen(tmp_path):
    """The check can fail: a command module that imports pandas at the top is reported."""
    script = SCRIPT.replace("from recmodels.cli import main", "import pandas\nfrom recmodels.cli import main")
    proc = subprocess.run([sys.executable, "-c", script, "score"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "pandas" in json.loads(proc.stdout.strip().splitlines()[-1])["heavy"]


def test_the_csv_option_defaults_are_the_dialects():
    import dataclasses

    from recmodels.cli import table_options
    from recmodels.tables import CsvDialect

    assert table_options.DEFAULTS == {f.name: f.default for f in dataclasses.fields(CsvDialect)}


def test_the_train_and_tune_defaults_are_the_configs():
    """The light homes hold what the library checks and defaults to (no copies in the CLI)."""
    import dataclasses

    from recmodels.cli import train as train_cli
    from recmodels.cli import tune as tune_cli
    from recmodels.training.setup import DataConfig
    from recmodels.tuning import search

    for field in dataclasses.fields(DataConfig):
        opt = train_cli.BY_NAME.get(field.name)
        if opt is not None and opt.section == "data":
            assert train_cli.default(opt) == field.default, field.name
    help_of = {o.name: o.help for o in tune_cli.OPTIONS}
    assert f"[default: {search.DEFAULT_TRIALS} without --timeout]" in help_of["trials"]
    assert f"[default: {search.DEFAULT_PRUNE_WARMUP}]" in help_of["prune_warmup"]


def test_an_option_group_hands_the_command_one_value():
    """``cli.options.option_group`` (score's and recommend's ``folding`` and ``cluster``): the
    group's options stay where they are declared in ``--help``, the callback gets one value built
    from them, and an error of the builder is the command's one-line error."""
    import click
    from click.testing import CliRunner

    from recmodels.cli.options import option_group

    def build(a, b):
        if a == b:
            raise click.UsageError("--a and --b must differ")
        return (a, b)

    pair = option_group("pair", build, click.option("--a", default=1), click.option("--b", default=2))

    @click.command()
    @click.option("--first")
    @pair
    @click.option("--last")
    def command(first, pair, last):
        click.echo(f"{first} {pair} {last}")

    runner = CliRunner()
    assert runner.invoke(command, ["--b", "5", "--first", "x"]).output == "x (1, 5) None\n"
    shown = runner.invoke(command, ["--help"]).output
    assert shown.index("--first") < shown.index("--a") < shown.index("--b") < shown.index("--last")
    res = runner.invoke(command, ["--b", "1"])
    assert res.exit_code == 2 and "--a and --b must differ" in res.output
