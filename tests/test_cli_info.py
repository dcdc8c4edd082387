"""`recmodels info` on interaction data, run directories and bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from recmodels.cli import cli

REPO = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(cli, ["info", *map(str, args)])


@pytest.fixture
def ratings_csv(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "user_id,book_id,rating,ts\n6,16002136,5,3\n6,17277800,4,2\n7,16002136,3,1\n8,19358975,1,9\n"
    )
    return path


def test_info_on_data_prints_the_statistics(ratings_csv):
    result = invoke(ratings_csv, "--item-col", "book_id", "--timestamp-col", "ts")
    assert result.exit_code == 0, result.output
    assert "Users:         3" in result.output
    assert "Items:         3" in result.output
    assert "Interactions:  4" in result.output
    assert "Density:       44.4 % of the 9 (user, item) pairs" in result.output
    assert "Per item:" in result.output and "Timestamps:    1 .. 9" in result.output


def test_info_json(ratings_csv):
    result = invoke(ratings_csv, "--item-col", "book_id", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["interactions"] == 4 and stats["rating_histogram"] == {"1": 1, "3": 1, "4": 1, "5": 1}


def test_info_on_bad_data_is_one_line_and_exit_1(ratings_csv, tmp_path):
    result = invoke(ratings_csv)
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message
    assert "'item_id'" in message and "'book_id'" in message and "--item-col" in message
    result = invoke(ratings_csv, "--item-col", "book_id", "--rating-range", "2", "5")
    assert result.exit_code == 1 and "rating 1 at data row 4" in result.output
    result = invoke(tmp_path / "missing.csv")
    assert result.exit_code == 1 and "not found" in result.output


def make_run(path, *, config=True, metrics=True, complete=True):
    path.mkdir()
    if config:
        (path / "config.json").write_text(json.dumps({
            "recmodels_version": "0.1.0",
            "model": {"kind": "neumf", "embedding_dim": 32, "num_layers": 3},
            "train": {"epochs": 6, "batch_size": 256, "lr": 0.001},
            "data": {"user_col": "user_id", "item_col": "book_id", "rating_col": "rating",
                     "timestamp_col": None, "rating_min": 1.0, "rating_max": 5.0,
                     "global_mean": 3.87, "sources": ["ratings.csv"],
                     "split": {"method": "random", "seed": 0, "fractions": [0.7, 0.2, 0.1]}},
        }))
    if metrics:
        (path / "metrics.json").write_text(json.dumps({
            "history": [
                {"epoch": 1, "train_rmse": 0.83, "valid_rmse": 0.73},
                {"epoch": 2, "train_rmse": 0.65, "valid_rmse": 0.7261},
            ],
            "best_epoch": 2,
            "valid": {"rmse": 0.7261},
            "test": {"rmse": 0.7252, "mae": 0.55, "hit_accuracy": 0.5585, "n": 419060},
        }))
    if complete:
        (path / "COMPLETE").write_text("")
    return path


def test_info_on_a_run_directory(tmp_path):
    result = invoke(make_run(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "status        complete" in out
    assert "model         neumf" in out and "embedding_dim=32" in out
    assert "best epoch 2" in out and "valid_rmse=0.7261" in out
    assert "test metrics  hit_accuracy=0.5585" in out and "rmse=0.7252" in out
    assert "book_id" in out and "ratings.csv" in out
    facts = json.loads(invoke(tmp_path / "run", "--json").output)
    assert facts["metrics"]["best_epoch"] == 2 and facts["complete"] is True


def test_info_on_an_unfinished_or_damaged_run_explains(tmp_path):
    result = invoke(make_run(tmp_path / "a", metrics=False, complete=False))
    assert result.exit_code == 0, result.output
    assert "incomplete" in result.output and "metrics.json missing" in result.output
    run = make_run(tmp_path / "b")
    (run / "config.json").write_text("{ not json")
    result = invoke(run)
    assert result.exit_code == 0, result.output
    assert "config.json unreadable" in result.output and "rmse=0.7252" in result.output


def test_info_on_a_bundle(tmp_path):
    pytest.importorskip("onnx")
    from bundle_factory import make_bundle

    fb = make_bundle(tmp_path / "bundle", kind="mf")
    result = invoke(fb.path)
    assert result.exit_code == 0, result.output
    assert "bundle" in result.output and "sha256 verified" in result.output
    assert "parity        max |onnx - numpy| = " in result.output and "test metrics  " in result.output
    result = invoke(fb.path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads((fb.path / "manifest.json").read_text())
    (fb.path / "model.onnx").write_bytes(b"garbage")
    result = invoke(fb.path)
    assert result.exit_code == 1 and "model.onnx" in result.output


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["info", "--help"])
    assert result.exit_code == 0 and "recmodels info ratings.csv" in result.output


SCRIPT = textwrap.dedent("""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sklearn"):
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Block())
    import recmodels.data, recmodels.datasets, recmodels.embeddings
    from recmodels.cli import main

    paths = recmodels.datasets.make_ratings(50, 40, 400).save(sys.argv[1])
    try:
        main(["info", str(paths["ratings"]), "--timestamp-col", "timestamp"])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
""")


def test_data_layer_and_info_import_neither_torch_nor_sklearn(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Interactions:  400" in proc.stdout


# -- issue 21: u.data (#10), "not rated" values (#13), the info lows -------------------------------
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t377\t4\t878887117\n"
GOODREADS_HEAD = REPO.parent / "shared" / "data" / "goodreads-head" / "goodreads_interactions_head.csv"


def test_info_reads_movielens_u_data(tmp_path):
    path = tmp_path / "u.data"
    path.write_text(U_DATA)
    result = invoke(path, "--sep", "tab", "--no-header", "--columns", "user_id,item_id,rating,timestamp",
                    "--timestamp-col", "timestamp")
    assert result.exit_code == 0, result.output
    assert "Interactions:  4" in result.output
    assert "Timestamps:    1997-11-07T" in result.output and "(epoch seconds 878887116" in result.output
    from conftest import assert_one_line_failure

    assert_one_line_failure(invoke(path), "u.data: unsupported file type '.data'", "--sep tab")
    assert_one_line_failure(invoke(path, "--sep", "tab"), "the header row looks like data",
                            "--no-header --columns")
    assert_one_line_failure(invoke(path, "--sep", "tab", "--no-header"), "--no-header", "needs --columns")
    assert_one_line_failure(invoke(path, "--sep", "::"), "one-character separators only")


def _shelves(tmp_path):
    rows = ["user_id,book_id,rating"] + [f"{u},{b},0" for u in range(8) for b in range(20)]
    rows += [f"{u},{100 + b},{1 + (u + b) % 5}" for u in range(8) for b in range(10)]
    path = tmp_path / "shelves.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_info_warns_about_a_not_rated_value(tmp_path):
    path = _shelves(tmp_path)
    result = CliRunner().invoke(cli, ["info", str(path), "--item-col", "book_id"])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "rating 0 holds 66.7 % of the rows" in warning[0]
    assert "--missing-rating 0" in warning[0]
    result = CliRunner().invoke(cli, ["info", str(path), "--item-col", "book_id", "--missing-rating", "0"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr and "Interactions:  80" in result.stdout
    assert "Not rated:     160 rows with rating 0 dropped (--missing-rating)" in result.stdout


@pytest.mark.skipif(not GOODREADS_HEAD.is_file(), reason="needs ../shared/data/goodreads-head")
def test_info_on_the_goodreads_head():
    result = CliRunner().invoke(cli, ["info", str(GOODREADS_HEAD), "--item-col", "book_id"])
    assert result.exit_code == 0, result.output
    assert "rating 0 holds 51.5 % of the rows" in result.stderr and "--missing-rating 0" in result.stderr
    result = CliRunner().invoke(cli, ["info", str(GOODREADS_HEAD), "--item-col", "book_id",
                                      "--missing-rating", "0", "--json"])
    stats = json.loads(result.stdout)
    assert stats["interactions"] == 97_037 and stats["missing_rating_dropped"] == 102_963


def test_info_on_an_mf_run_shows_only_mf_fields(tmp_path):
    run = make_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["model"] = {"kind": "mf", "embedding_dim": 32, "num_layers": 3, "dropouts": [0.5, 0.3, 0.3],
                       "pretrained_dim": 0, "use_bias": True}
    config["data"].update(rating_step=0.5, missing_rating=0.0, missing_rating_dropped=12,
                          csv={"sep": "\t", "header": False, "columns": ["u", "i", "r"]})
    (run / "config.json").write_text(json.dumps(config))
    out = invoke(run).output
    assert "model         mf  (embedding_dim=32, use_bias=True)" in out
    assert "ratings in [1.0, 5.0] step 0.5" in out and "not rated     rating 0: 12 rows dropped" in out
    assert "csv           sep '\\t', no header, columns u,i,r" in out
    config["model"]["kind"] = "neumf"
    (run / "config.json").write_text(json.dumps(config))
    out = invoke(run).output
    assert "num_layers=3" in out and "dropouts=" in out and "pretrained_dim" not in out


def test_info_on_a_tune_directory(tmp_path):
    from recmodels.cli import info as info_cli
    from recmodels.tuning import search, settings

    assert (info_cli.TUNE_SETTINGS_FILE, info_cli.TUNE_TABLE_FILE, info_cli.TUNE_BEST_DIR) == (
        settings.SETTINGS_FILE, search.TABLE_JSON, search.BEST_DIR)
    out = tmp_path / "tuned"
    (out / "trials" / "trial-0" / "split").mkdir(parents=True)
    (out / "trials" / "trial-0" / "split" / "train.parquet").write_bytes(b"PAR1")
    (out / "trials.csv").write_text("trial,state\n0,complete\n")
    (out / "tune.json").write_text(json.dumps({"settings": {
        "model": ["mf", "neumf"], "inputs": {"data": "/data/ratings.csv", "train": None}}}))
    (out / "trials.json").write_text(json.dumps({
        "best": {"trial": 1, "valid_rmse": 0.8123, "params": {"model": "mf", "l2": 0.1}},
        "trials": [{"trial": 0, "state": "pruned"}, {"trial": 1, "state": "complete"}]}))
    make_run(out / "best")
    result = invoke(out)
    assert result.exit_code == 0, result.output  # was: "mixes CSV and Parquet files"
    text = result.output
    assert "tune          " in text and "models        mf, neumf" in text and "data /data/ratings.csv" in text
    assert "trials        2 (1 complete, 1 pruned)" in text and "best trial    1: valid rmse 0.8123" in text
    assert "best params   l2=0.1, model=mf" in text and "test metrics  hit_accuracy=0.5585" in text
    facts = json.loads(invoke(out, "--json").output)
    assert facts["trials"]["best"]["trial"] == 1 and facts["best_run"]["complete"] is True
    (out / "trials.json").unlink()
    assert "trials        none yet (trials.json missing)" in invoke(out).output
