"""Issue 11, as a new user hit it: ids whose type depends on the file format, the unknown-id guard,
one message for unknown ids, the CUDA warning once. End to end through the CLI and Python."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner

from recmodels.cli import cli
from recmodels.datasets import make_ratings
from recmodels.errors import DataError
from recmodels.scoring import Scorer


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def ratings():
    return make_ratings(n_users=300, n_items=200, n_ratings=8000, seed=0).ratings


def _train_export(tmp, data_path):
    res = run("train", "--data", data_path, "--model", "mf", "--epochs", "1", "--out", tmp / "run", "-q")
    assert res.exit_code == 0, res.output
    res = run("export", tmp / "run", "--format", "onnx", "--out", tmp / "b")
    assert res.exit_code == 0, res.output
    return tmp / "b"


def test_float_looking_csv_ids_score_with_integer_ids(tmp_path, ratings):
    """The issue's reproduction: ids written as 204.0 train as integers; integer pairs all known."""
    floats = ratings.astype({"user_id": "float64", "item_id": "float64"})
    floats.to_csv(tmp_path / "floatids.csv", index=False)
    assert (tmp_path / "floatids.csv").read_text().splitlines()[1].split(",")[0].endswith(".0")
    bundle = _train_export(tmp_path, tmp_path / "floatids.csv")
    info = run("info", bundle)
    assert "(int64)" in info.output and "(string)" not in info.output, info.output
    pairs = ratings[["user_id", "item_id"]]
    pairs.to_csv(tmp_path / "intpairs.csv", index=False)
    pairs.to_parquet(tmp_path / "intpairs.parquet")
    for name in ("intpairs.csv", "intpairs.parquet", "floatids.csv"):
        res = run("score", bundle, tmp_path / name, tmp_path / f"{name}.out.parquet", "--device", "cpu")
        assert res.exit_code == 0, res.output
        out = pd.read_parquet(tmp_path / f"{name}.out.parquet")
        assert len(out) == len(ratings) and out["known"].all(), name
        assert "unknown" not in res.output


def test_text_typed_parquet_ids_train_and_score(tmp_path, ratings):
    table = pa.table({
        "user_id": ratings["user_id"].astype(str),
        "item_id": ratings["item_id"].astype(str),
        "rating": ratings["rating"],
    })
    pq.write_table(table, tmp_path / "text.parquet")
    bundle = _train_export(tmp_path, tmp_path / "text.parquet")
    res = run("score", bundle, tmp_path / "text.parquet", tmp_path / "o.parquet", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert pd.read_parquet(tmp_path / "o.parquet")["known"].all()
    # categoricals with string categories score in Python as they do on the CLI
    frame = ratings[["user_id", "item_id"]].astype(str).astype("category")
    out = Scorer(bundle, device="cpu").score_frame(frame)
    assert out["known"].all()


def test_leading_zeros_are_not_an_integer_id(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf", user_ids=np.array([204, 205]), item_ids=np.array([1, 2]))
    (tmp_path / "in.csv").write_text("user_id,item_id\n204,1\n0000204,1\n204.0,2\n+204,2\n")
    res = run("score", fb.path, tmp_path / "in.csv", tmp_path / "o.csv", "--device", "cpu",
              "--max-unknown-share", "1")
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "o.csv")["known"].tolist() == [True, False, True, False]


def test_unknown_share_guard_stops_with_one_line_and_no_output(tmp_path, ratings):
    fb = make_bundle(tmp_path / "b", kind="mf")
    n = 400
    pd.DataFrame({"user_id": [f"u{k}" for k in range(n)], "item_id": fb.item_ids[np.arange(n) % 40]}
                 ).to_csv(tmp_path / "strings.csv", index=False)
    for out in ("o.parquet", "odir"):
        res = run("score", fb.path, tmp_path / "strings.csv", tmp_path / out, "--device", "cpu")
        assert res.exit_code == 1
        line = res.output.strip()
        assert line.count("\n") == 0 and line.startswith("Error: "), res.output
        assert "400 of 400 rows" in line and "--max-unknown-share" in line
        assert "text but the bundle's are integer" in line
        assert not (tmp_path / out).exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    res = run("score", fb.path, tmp_path / "strings.csv", tmp_path / "o.parquet", "--device", "cpu",
              "--max-unknown-share", "1")
    assert res.exit_code == 0 and "400 rows with unknown ids" in res.output
    # below the limit: scored, and the summary counts them
    mixed = pd.DataFrame({"user_id": np.r_[fb.user_ids[:30], [-1] * 10], "item_id": fb.item_ids[:40]})
    mixed.to_parquet(tmp_path / "mixed.parquet")
    res = run("score", fb.path, tmp_path / "mixed.parquet", tmp_path / "m.parquet", "--device", "cpu")
    assert res.exit_code == 0 and "10 rows with unknown ids" in res.output


def test_parquet_guard_stops_early(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf")
    n = 100_000
    frame = pd.DataFrame({"user_id": np.full(n, -1), "item_id": np.full(n, fb.item_ids[0])})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "in.parquet", row_group_size=10_000)
    scorer = Scorer(fb.path, device="cpu", batch_size=10_000)
    with pytest.raises(DataError, match="of the first [0-9,]+ of 100,000 rows have ids"):
        scorer.score_file(tmp_path / "in.parquet", tmp_path / "out")
    assert scorer.counts["unknown_rows"] < n  # stopped before reading everything
    assert not (tmp_path / "out").exists()


def test_in_memory_apis_warn_past_the_limit_and_count(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf")
    scorer = Scorer(fb.path, device="cpu")
    frame = pd.DataFrame({"user_id": [-1, -2, fb.user_ids[0]], "item_id": fb.item_ids[:3]})
    with pytest.warns(UserWarning, match="2 of 3 rows have ids the bundle does not know"):
        scorer.score_frame(frame)
    assert scorer.counts["unknown_rows"] == 2 and scorer.counts["unknown_users"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scorer.score_arrays(fb.user_ids[:3], fb.item_ids[:3])
    assert scorer.counts["unknown_rows"] == 0


def test_unknown_id_message_is_the_same_in_python_and_on_the_cli(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf")
    frame = pd.DataFrame({"user_id": [fb.user_ids[0], np.nan], "item_id": fb.item_ids[:2]})
    with pytest.raises(DataError) as python:
        Scorer(fb.path, device="cpu", unknown="error").score_frame(frame)
    frame.to_csv(tmp_path / "in.csv", index=False)
    res = run("score", fb.path, tmp_path / "in.csv", tmp_path / "o.csv", "--device", "cpu",
              "--unknown", "error")
    assert res.exit_code == 1
    assert str(python.value) == "unknown user id null at data row 2; it is not in the bundle's id map " \
        "(use --unknown fallback or skip to score anyway)"
    assert res.output.strip() == f"Error: {python.value}"


def test_cuda_warning_once_per_process_and_never_under_quiet(tmp_path, monkeypatch):
    from recmodels.scoring.runtime import providers

    fb = make_bundle(tmp_path / "b", kind="mf")
    monkeypatch.setattr(providers, "cuda_compiled", lambda: False)
    monkeypatch.setattr(providers, "gpu_visible", lambda: True)  # a GPU this build cannot use
    monkeypatch.setattr(providers, "_warned", set())
    with pytest.warns(RuntimeWarning, match="CUDA unavailable"):
        first = Scorer(fb.path, device="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = Scorer(fb.path, device="auto")
    assert first.warnings == second.warnings and second.warnings  # still in every report
    pd.DataFrame({"user_id": fb.user_ids[:5], "item_id": fb.item_ids[:5]}).to_csv(tmp_path / "in.csv",
                                                                                    index=False)
    quiet = CliRunner().invoke(
        cli, ["score", str(fb.path), str(tmp_path / "in.csv"), str(tmp_path / "o.csv"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == ""
    loud = CliRunner().invoke(
        cli, ["score", str(fb.path), str(tmp_path / "in.csv"), str(tmp_path / "o2.csv")])
    assert loud.exit_code == 0 and loud.stderr.startswith("warning: CUDA unavailable")
