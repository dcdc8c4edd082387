"""``recmodels evaluate``: a factory bundle and a tiny trained run end to end, one clear line per bad
input (nothing written), and a torch-free run of ``recmodels.scoring.evaluation.evaluator`` on a bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner
from conftest import assert_one_line_failure

from recmodels.cli import cli

REPO = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args)])



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    fb = make_bundle(root / "bundle", kind="neumf", n_users=60, n_items=150, folded=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.choice(fb.user_ids, 2500), "item_id": rng.choice(fb.item_ids, 2500),
                          "rating": rng.integers(1, 6, 2500)}).drop_duplicates(["user_id", "item_id"])
    frame.iloc[:2000].to_csv(root / "train.csv", index=False)
    test = frame.iloc[2000:].copy()
    test.iloc[:3, 0] = 999_999  # unknown users: counted, scored by the fallback
    test.to_csv(root / "test.csv", index=False)
    return {"root": root, "bundle": fb.path, "train": root / "train.csv", "test": root / "test.csv",
            "rows": len(test)}


def test_bundle_end_to_end(tmp_path, setup):
    out_json, out_png = tmp_path / "r" / "report.json", tmp_path / "r" / "plot.png"
    result = invoke(setup["bundle"], setup["test"], "--train", setup["train"], "--device", "cpu",
                    "--json", out_json, "--plot", out_png)
    assert result.exit_code == 0, result.output
    for fragment in ("RMSE", "hit accuracy", "HR@10", "NDCG@10", "user+item bias", "global mean",
                     "3 with ids it does not know", "cold (< 5)", "unknown ids"):
        assert fragment in result.output, fragment
    report = json.loads(out_json.read_text())
    assert report["data"]["rows"] == setup["rows"] and report["data"]["unknown_rows"] == 3
    assert set(report["rating"]) == {"model", "bias", "global_mean"}
    assert report["protocol"]["k"] == 10 and report["protocol"]["negatives"] == 99
    assert report["ranking"]["model"]["all"]["n"] == setup["rows"] - 3
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_options_reach_the_report(tmp_path, setup):
    out = tmp_path / "r.json"
    result = invoke(setup["bundle"], setup["test"], "--device", "cpu", "-k", "5", "--all-items",
                    "--ties", "average", "--no-baselines", "--clip", "--json", out, "-q")
    assert result.exit_code == 0 and result.output == "", result.output
    report = json.loads(out.read_text())
    assert report["protocol"] == {"k": 5, "negatives": None, "all_items": True, "ranking": True, "seed": 0,
                                  "ties": "average", "buckets": {"cold": "< 5", "medium": "5-49",
                                                                 "heavy": ">= 50"}, "clip": True}
    assert list(report["rating"]) == ["model"] and report["train"] is None


@pytest.mark.parametrize("args, fragments", [
    (["-k", "0"], ["--top-k must be a positive integer, got 0"]),
    (["-k", "101"], ["--top-k 101 is larger than the candidate set"]),
    (["--negatives", "200"], ["--negatives 200 needs at least 201 items but the model has 150"]),
    (["--buckets", "5"], ["--buckets must be two integers"]),
    (["--user-col", "uid"], ["missing evaluation column(s) 'uid'", "--user-col"]),
])
def test_bad_options_are_one_line(tmp_path, setup, args, fragments):
    out = tmp_path / "r.json"
    assert_one_line_failure(invoke(setup["bundle"], setup["test"], "--device", "cpu", "--json", out, *args),
                            *fragments)
    assert not out.exists()


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, setup):
    out = tmp_path / "r.json"
    (tmp_path / "strings.csv").write_text("user_id,item_id,rating\nu1,i1,3\nu2,i2,4\n")
    assert_one_line_failure(invoke(setup["bundle"], tmp_path / "strings.csv", "--json", out),
                            "none of the 2 evaluation rows has ids the model knows",
                            "text but the bundle's are integer")
    assert_one_line_failure(invoke(setup["bundle"], tmp_path / "nope.csv", "--json", out), "not found")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    assert_one_line_failure(invoke(setup["bundle"], tmp_path / "garbage.parquet"), "garbage.parquet")
    assert_one_line_failure(invoke(setup["bundle"], setup["test"], "--train", tmp_path / "strings.csv"),
                            "none of the 2 training rows")
    assert_one_line_failure(invoke(tmp_path, setup["test"]), "neither a run directory", "nor a bundle")
    assert_one_line_failure(invoke(tmp_path / "missing", setup["test"]), "does not exist")
    assert_one_line_failure(invoke(setup["bundle"]), "give DATA")
    (tmp_path / "file").write_text("")
    assert_one_line_failure(invoke(setup["bundle"], setup["test"], "--json", tmp_path / "file" / "r.json"),
                            "cannot write in", "(not a directory)")
    assert_one_line_failure(invoke(setup["bundle"], setup["test"], "--plot", tmp_path), "is a directory")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "garbage.parquet", "strings.csv"]


def test_plot_without_training_data(tmp_path, setup):
    """No --train: no activity buckets, and the plot draws what there is (issue 21 #2)."""
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "r.json", tmp_path / "p.png"
    result = invoke(setup["bundle"], setup["test"], "--device", "cpu", "--json", out_json, "--plot", out_png)
    assert result.exit_code == 0, result.output
    assert json.loads(out_json.read_text())["train"] is None
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from recmodels.scoring.evaluation.evaluator import evaluate, plot_evaluation

    report = evaluate(setup["bundle"], setup["test"], device="cpu", ranking=False)
    assert plot_evaluation(report, tmp_path / "api.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failed_plot_keeps_the_json(tmp_path, setup, monkeypatch):
    pytest.importorskip("matplotlib")
    from recmodels.scoring.evaluation import evaluator

    def broken(report, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(evaluator, "plot_evaluation", broken)
    out_json, out_png = tmp_path / "r.json", tmp_path / "p.png"
    result = invoke(setup["bundle"], setup["test"], "--device", "cpu", "--no-ranking", "--json", out_json,
                    "--plot", out_png)
    assert_one_line_failure(result, str(out_png), "No space left on device")
    assert json.loads(out_json.read_text())["data"]["rows"] == setup["rows"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("option, name, fragment", [
    ("--plot", "p.txt", "--plot p.txt: --plot writes a PNG image; give a name ending in .png"),
    ("--plot", "/proc/p.png", "--plot /proc/p.png: cannot write in /proc"),  # unwritable, even for root
    ("--json", "/proc/r.json", "--json /proc/r.json: cannot write in /proc"),
])
def test_outputs_are_checked_before_the_work(tmp_path, setup, monkeypatch, option, name, fragment):
    import importlib

    if name.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc here")

    def never(*args, **kwargs):
        raise AssertionError("evaluated before the output was checked")

    for module in ("recmodels.scoring.evaluation.evaluator", "recmodels.export.evaluate_run"):
        try:
            monkeypatch.setattr(importlib.import_module(module), "evaluate", never)
        except (ImportError, AttributeError):
            pass
    monkeypatch.chdir(tmp_path)
    assert_one_line_failure(invoke(setup["bundle"], setup["test"], option, name), fragment)
    assert list(tmp_path.iterdir()) == []


def test_plot_without_matplotlib_names_the_extra(tmp_path, setup, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "r.json"
    result = invoke(setup["bundle"], setup["test"], "--json", out, "--plot", tmp_path / "p.png")
    assert_one_line_failure(result, "--plot needs matplotlib", "pip install 'recmodels[train]'")
    assert not out.exists()


def test_help_describes_the_command():
    result = CliRunner().invoke(cli, ["evaluate", "--help"])
    assert result.exit_code == 0 and "run directory or a bundle" in result.output
    assert "--negatives" in result.output and "--all-items" in result.output


# -- a run directory --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from recmodels.datasets import make_ratings

    root = tmp_path_factory.mktemp("run")
    make_ratings(150, 120, 4000, seed=1).ratings.to_csv(root / "ratings.csv", index=False)
    args = ["train", "--data", root / "ratings.csv", "--model", "mf", "--epochs", "1", "--threads", "1",
            "--quiet", "--out", root / "run"]
    result = CliRunner().invoke(cli, list(map(str, args)))
    assert result.exit_code == 0, result.output
    return root / "run"


def test_run_directory_end_to_end(tmp_path, run_dir):
    out = tmp_path / "r.json"
    result = invoke(run_dir, "--device", "cpu", "--json", out, "--negatives", "50")
    assert result.exit_code == 0, result.output
    assert f"evaluate {run_dir} (mf) on {run_dir / 'split' / 'test.parquet'}" in result.output
    report = json.loads(out.read_text())
    assert report["model"]["exported_from_run"] is True and report["model"]["path"] == str(run_dir)
    assert report["train"]["source"] == str(run_dir / "split" / "train.parquet")
    # the same model, the same test split: the ONNX path reproduces training's own test RMSE
    trained = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert report["rating"]["model"]["all"]["rmse"] == pytest.approx(trained["rmse"], rel=1e-4)
    assert report["rating"]["model"]["all"]["n"] == trained["n"]
    assert report["data"]["unknown_rows"] == 0


def test_run_directory_with_other_data(tmp_path, run_dir):
    pd.read_parquet(run_dir / "split" / "test.parquet")  # encoded: the raw file comes from the ids
    raw = pd.read_csv(run_dir.parent / "ratings.csv").iloc[:300]
    raw.to_csv(tmp_path / "some.csv", index=False)
    result = invoke(run_dir, tmp_path / "some.csv", "--device", "cpu", "--no-ranking")
    assert result.exit_code == 0, result.output
    assert "HR@10" not in result.output and "some.csv" in result.output


# -- torch-free ------------------------------------------------------------------------------------------
SCRIPT = textwrap.dedent("""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sklearn"):
                raise ModuleNotFoundError(f"blocked import of {name}", name=name)
            return None

    sys.meta_path.insert(0, Block())

    from recmodels.scoring.evaluation.evaluator import evaluate
    from recmodels.cli import main

    bundle, test, train, out = sys.argv[1:5]
    report = evaluate(bundle, test, train=train, device="cpu")
    assert report.ranking["model"]["all"]["n"] > 0
    try:
        main(["evaluate", bundle, test, "--train", train, "--json", out, "-q"])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    if len(sys.argv) > 5:  # a run directory needs the export, hence torch: one line naming the extra
        try:
            main(["evaluate", sys.argv[5]])
        except SystemExit as exc:
            assert exc.code == 1, exc.code
    print("ok", round(report.rating["model"]["all"]["rmse"], 4))
""")


def test_evaluate_on_a_bundle_imports_neither_torch_nor_sklearn(tmp_path, setup, request):
    args = [str(setup["bundle"]), str(setup["test"]), str(setup["train"]), str(tmp_path / "r.json")]
    try:
        args.append(str(request.getfixturevalue("run_dir")))
    except pytest.skip.Exception:
        pass
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
    assert json.loads((tmp_path / "r.json").read_text())["data"]["rows"] == setup["rows"]
    if len(args) > 4:
        assert "recmodels[train]" in proc.stderr, proc.stderr
