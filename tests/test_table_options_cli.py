"""``--sep`` / ``--no-header`` / ``--columns`` on the torch-free commands (issue 21 #10), and hit
accuracy on the bundle's rating step in ``evaluate`` (#9)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_failure

pytest.importorskip("onnx")

from bundle_factory import make_bundle  # noqa: E402

from recmodels.cli import cli  # noqa: E402
from recmodels.metrics import hit_accuracy  # noqa: E402

U_COLUMNS = "user_id,item_id,rating,timestamp"
NO_HEADER = ["--sep", "tab", "--no-header", "--columns", U_COLUMNS]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dialect")
    fb = make_bundle(root / "bundle", kind="mf")
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"user_id": rng.choice(fb.user_ids, n), "item_id": rng.choice(fb.item_ids, n),
                          "rating": rng.integers(1, 11, n) / 2, "timestamp": 881250949})
    frame = frame.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    (root / "u.data").write_text(frame.to_csv(sep="\t", header=False, index=False))
    frame.to_csv(root / "ratings.csv", index=False)
    return fb, frame, root


def run(*args):
    return CliRunner().invoke(cli, [*map(str, args)])


def test_score_reads_a_file_without_a_header(setup, tmp_path):
    fb, frame, root = setup
    result = run("score", fb.path, root / "u.data", tmp_path / "a.parquet", *NO_HEADER, "--quiet")
    assert result.exit_code == 0, result.output
    result = run("score", fb.path, root / "ratings.csv", tmp_path / "b.parquet", "--quiet")
    assert result.exit_code == 0, result.output
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert len(a) == len(frame) and np.array_equal(a["score"], b["score"])
    # parts: a resume must read the rows the same way
    parts = tmp_path / "parts"
    assert run("score", fb.path, root / "u.data", parts, *NO_HEADER, "--quiet").exit_code == 0
    assert json.loads((parts / "_scoring.json").read_text())["csv"]["header"] is False
    assert_one_line_failure(run("score", fb.path, root / "u.data", tmp_path / "c.parquet", "--quiet"),
                            "unsupported file type '.data'", "--sep tab")
    assert_one_line_failure(run("score", fb.path, root / "u.data", tmp_path / "d.parquet", "--sep", "tab",
                                "-q"),
                            "header row looks like data", "--no-header --columns")
    assert_one_line_failure(run("score", fb.path, root / "u.data", tmp_path / "e", *NO_HEADER,
                                "--engine", "dask"), "need --engine local")
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "e").exists()


def test_recommend_reads_its_inputs_without_a_header(setup, tmp_path):
    fb, frame, root = setup
    users = tmp_path / "users.txt"
    users.write_text("\n".join(str(u) for u in fb.user_ids[:5]) + "\n")
    result = run("recommend", fb.path, tmp_path / "a.parquet", "--users", users, "--exclude-seen",
                 root / "u.data", "--sep", "tab", "--no-header", "--columns", "user_id", "--quiet")
    # one dialect for every input of the command: u.data has four columns, the list one
    assert_one_line_failure(result, "u.data", "where --columns names 1")
    seen = tmp_path / "seen.data"
    seen.write_text(frame[["user_id", "item_id"]].to_csv(sep="\t", header=False, index=False))
    result = run("recommend", fb.path, tmp_path / "a.parquet", "--users", users, "--exclude-seen", seen,
                 "--sep", "tab", "--no-header", "--columns", "user_id,item_id", "--quiet", "-k", "3")
    assert result.exit_code == 0, result.output
    (tmp_path / "users.csv").write_text("user_id\n" + users.read_text())
    result = run("recommend", fb.path, tmp_path / "b.parquet", "--users", tmp_path / "users.csv",
                 "--exclude-seen", root / "ratings.csv", "--quiet", "-k", "3")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"),
                                  pd.read_parquet(tmp_path / "b.parquet"))
    assert_one_line_failure(run("recommend", fb.path, tmp_path / "c", "--exclude-seen", seen, *NO_HEADER,
                                "--engine", "spark"), "need --engine local")


def _with_step(path, step: float, rating_min: float) -> None:
    """Record a rating step in a factory bundle's manifest (and its digest), as export does."""
    from recmodels.bundle.manifest import manifest_digest

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["rating"].update(step=step, min=rating_min)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_evaluate_reads_u_data_and_rounds_hits_to_the_bundles_step(setup, tmp_path):
    fb, frame, root = setup
    result = run("evaluate", fb.path, root / "u.data", *NO_HEADER, "--no-ranking", "--json",
                 tmp_path / "whole.json")
    assert result.exit_code == 0, result.output
    whole = json.loads((tmp_path / "whole.json").read_text())
    assert "rating_step" not in whole["protocol"]  # a bundle that records no step: whole numbers
    assert "hit accuracy  " in result.output
    from recmodels.scoring import score_frame

    scores = score_frame(fb.path, frame[["user_id", "item_id"]])["score"].to_numpy()
    expected = hit_accuracy(frame["rating"], scores)
    assert whole["rating"]["model"]["all"]["hit_accuracy"] == pytest.approx(expected)
    bundle = tmp_path / "halves"
    make_bundle(bundle, kind="mf")
    _with_step(bundle, 0.5, 0.5)
    result = run("evaluate", bundle, root / "ratings.csv", "--no-ranking", "--json", tmp_path / "half.json")
    assert result.exit_code == 0, result.output
    half = json.loads((tmp_path / "half.json").read_text())
    assert half["protocol"]["rating_step"] == 0.5 and "hit accuracy (step 0.5)" in result.output
    expected = hit_accuracy(frame["rating"], scores, step=0.5, origin=0.5)
    assert half["rating"]["model"]["all"]["hit_accuracy"] == pytest.approx(expected)
    assert expected > whole["rating"]["model"]["all"]["hit_accuracy"]
