"""`recmodels recommend` on the command line: outputs, one-line errors, kill + --resume, torch-free."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner
from test_torch_free import BLOCKER

from recmodels.cli import cli
from recmodels.scoring import recommend

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "recmodels"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-recommend")
    fb = make_bundle(root / "bundle", kind="neumf", folded=True, n_users=120, n_items=90)
    rng = np.random.default_rng(0)
    seen = pd.DataFrame(
        {
            "user_id": fb.user_ids[rng.integers(0, 120, 900)],
            "item_id": fb.item_ids[rng.integers(0, 90, 900)],
            "rating": 4,
        }
    )
    pq.write_table(pa.Table.from_pandas(seen, preserve_index=False), root / "seen.parquet")
    return root, fb, seen


def invoke(*args):
    return CliRunner().invoke(cli, ["recommend", *map(str, args)])


def test_cli_writes_one_file_and_a_report(tmp_path, setup):
    root, fb, seen = setup
    out, report = tmp_path / "recs.parquet", tmp_path / "r.json"
    res = invoke(
        fb.path,
        out,
        "--top-k",
        5,
        "--exclude-seen",
        root / "seen.parquet",
        "--device",
        "cpu",
        "--report",
        report,
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("recommended top-5 for 120 users") and res.output.count("\n") == 1
    got = pd.read_parquet(out)
    pd.testing.assert_frame_equal(got, recommend(fb.path, k=5, exclude_seen=seen, device="cpu"))
    rep = json.loads(report.read_text())
    assert rep["rows_written"] == 600 and rep["users_written"] == 120 and rep["k"] == 5
    assert rep["seen_pairs"] == len(seen.drop_duplicates(["user_id", "item_id"]))
    assert rep["provider"] == "cpu" and rep["mode"] == "exact" and rep["output_mode"] == "file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_parts_csv_and_users_file(tmp_path, setup):
    root, fb, seen = setup
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": fb.user_ids[[5, 3, 90, 11]]}).to_csv(users, index=False)
    out = tmp_path / "recs"
    res = invoke(
        fb.path,
        out,
        "-k",
        4,
        "--users",
        users,
        "--exclude-seen",
        root / "seen.parquet",
        "--format",
        "csv",
        "--part-users",
        3,
        "--device",
        "cpu",
        "-q",
    )
    assert res.exit_code == 0 and res.output == "", res.output
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.csv", "part-00001.csv"]
    assert (out / "_SUCCESS").exists()
    got = pd.concat([pd.read_csv(p) for p in sorted(out.glob("part-*.csv"))], ignore_index=True)
    want = recommend(fb.path, users=fb.user_ids[[5, 3, 90, 11]], k=4, exclude_seen=seen, device="cpu")
    assert got["user_id"].tolist() == want["user_id"].tolist()
    assert got["item_id"].tolist() == want["item_id"].tolist()
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-6)


def _bad_cases(root: Path, fb, tmp: Path) -> dict:
    (tmp / "empty.csv").write_text("user_id\n")
    pd.DataFrame({"user_id": fb.user_ids[[1, 2, 1]]}).to_csv(tmp / "dup.csv", index=False)
    pd.DataFrame({"reader": [1], "book": [2]}).to_parquet(tmp / "cols.parquet")
    pd.DataFrame({"user_id": [f"x{k}" for k in range(9)], "item_id": ["a"] * 9}).to_csv(
        tmp / "text.csv", index=False
    )
    (tmp / "blocker").write_text("a file, not a directory")
    pd.DataFrame({"item_id": fb.item_ids[[4, 7, 4]]}).to_csv(tmp / "dup_items.csv", index=False)
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text("{}")  # what `recmodels train` writes
    seen = ["--exclude-seen", root / "seen.parquet"]
    return {
        "k_zero": (["-k", 0], "--top-k must be a positive integer, got 0"),
        "k_too_big": (["-k", 91], "--top-k 91 is larger than the 90 candidate items"),
        "empty_users": (["--users", tmp / "empty.csv"], "the user list is empty"),
        "duplicated_users": (["--users", tmp / "dup.csv"], "is listed more than once"),
        "missing_users_file": (["--users", tmp / "nope.csv"], "user list file not found"),
        "seen_columns": (
            ["--exclude-seen", tmp / "cols.parquet"],
            "missing exclude-seen column(s) 'user_id'",
        ),
        "seen_types": (
            ["--exclude-seen", tmp / "text.csv"],
            "9 of 9 rows (100.0 %) have ids the bundle does not",
        ),
        "old_bundle": ([], "was exported before recommend existed; re-export it with `recmodels export RUN"),
        "unwritable": ([*seen, "--overwrite"], "cannot create output directory"),
        "candidates_mf": (["--candidates", 5], "--candidates needs a NeuMF or hybrid bundle"),
        "resume_file": (["--resume"], "--resume needs a directory output"),
        "candidates_below_k": (
            ["--candidates", 5, "-k", 10],
            "--candidates 5 is fewer than --top-k 10: the re-ranking only orders the 5 retrieved items; "
            "use --candidates 10 or more",
        ),
        "duplicated_items": (["--items", tmp / "dup_items.csv"], "is listed more than once"),
        "run_not_bundle": ([], "is a training run, not a bundle; export it first with `recmodels export"),
        "format_vs_name": (["--format", "csv"], "--format csv does not match the .parquet name"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "k_zero",
        "k_too_big",
        "empty_users",
        "duplicated_users",
        "missing_users_file",
        "seen_columns",
        "seen_types",
        "old_bundle",
        "unwritable",
        "candidates_mf",
        "resume_file",
        "candidates_below_k",
        "duplicated_items",
        "run_not_bundle",
        "format_vs_name",
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, setup, case):
    root, fb, _ = setup
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args, message = _bad_cases(root, fb, inputs)[case]
    bundle = fb.path
    if case == "old_bundle":
        bundle = REPO / "tests" / "data" / "bundles" / "v1-hybrid-unfolded"
    elif case == "candidates_mf":
        bundle = make_bundle(tmp_path / "mf", kind="mf").path
    elif case == "run_not_bundle":
        bundle = inputs / "run"
    out = tmp_path / "out" / "recs.parquet"
    if case == "unwritable":
        out = inputs / "blocker" / "recs.parquet"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = subprocess.run(
        CLI + ["recommend", str(bundle), str(out), "--device", "cpu", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, not even a directory


def test_id_lists_with_their_own_column_names(tmp_path, setup):
    """--users-col / --items-col: lists whose column differs from --exclude-seen's (issue 21)."""
    root, fb, seen = setup
    pd.DataFrame({"reader": fb.user_ids[[5, 3]]}).to_csv(tmp_path / "users.csv", index=False)
    pd.DataFrame({"book": fb.item_ids[:40], "title": "t"}).to_parquet(tmp_path / "items.parquet")
    out = tmp_path / "recs.parquet"
    res = invoke(fb.path, out, "-k", 3, "--users", tmp_path / "users.csv", "--users-col", "reader",
                 "--items", tmp_path / "items.parquet", "--items-col", "book",
                 "--exclude-seen", root / "seen.parquet", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    want = recommend(fb.path, users=fb.user_ids[[5, 3]], k=3, items=fb.item_ids[:40], exclude_seen=seen,
                           device="cpu")
    pd.testing.assert_frame_equal(pd.read_parquet(out), want)


def test_outputs_use_the_bundle_id_names_and_types(tmp_path):
    """recommend and score write the ids under the bundle's column names, in its id type (issue 21)."""
    fb = make_bundle(tmp_path / "b", kind="mf", n_users=30, n_items=20, user_column="reader",
                     item_column="book")
    pd.DataFrame({"reader": fb.user_ids[:4], "book": fb.item_ids[:4]}).to_csv(tmp_path / "p.csv", index=False)
    assert invoke(fb.path, tmp_path / "r.parquet", "-k", 2, "--device", "cpu", "-q").exit_code == 0
    scored = CliRunner().invoke(cli, ["score", str(fb.path), str(tmp_path / "p.csv"),
                                      str(tmp_path / "s.parquet"), "--device", "cpu", "-q"])
    assert scored.exit_code == 0, scored.output
    recs, scores = pq.read_schema(tmp_path / "r.parquet"), pq.read_schema(tmp_path / "s.parquet")
    assert recs.names == ["reader", "rank", "book", "score"]
    for column in ("reader", "book"):
        assert recs.field(column).type == scores.field(column).type == pa.int64()


SLOW_PARTS = textwrap.dedent("""
    import sys, time
    from recmodels.cli import main
    from recmodels.scoring.output.writers import PartsOutput
    end_part = PartsOutput.end_part
    def slow_end_part(self, *args, **kwargs):
        end_part(self, *args, **kwargs)
        time.sleep(0.05)
    PartsOutput.end_part = slow_end_part
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("extra", [[], ["--candidates", "30"]], ids=["exact", "two-stage"])
def test_kill_and_resume_matches_clean_run(tmp_path, setup, extra):
    root, fb, _ = setup
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [str(fb.path)]
    opts = [
        "--exclude-seen",
        str(root / "seen.parquet"),
        "-k",
        "6",
        "--part-users",
        "2",
        "--device",
        "cpu",
        "-q",
        *extra,
    ]
    clean = tmp_path / "clean"
    subprocess.run(CLI + ["recommend", *args, str(clean), *opts], check=True, env=env, timeout=120)

    out = tmp_path / "out"
    # slowed down by monkeypatching the writer in the child process (no test hook in the library)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PARTS, "recommend", *args, str(out), *opts], env=env)
    deadline = time.monotonic() + 60
    while len(list(out.glob("part-*"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("part-*")))
    assert 5 <= done < 60 and not (out / "_SUCCESS").exists()

    res = subprocess.run(CLI + ["recommend", *args, str(out), *opts], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "--resume" in res.stderr
    changed = ["5" if a == "6" else a for a in opts]  # -k 5: other settings
    other = subprocess.run(
        CLI + ["recommend", *args, str(out), "--resume", *changed], env=env, capture_output=True, text=True
    )
    assert other.returncode == 1 and "different settings" in other.stderr, other.stderr
    subprocess.run(CLI + ["recommend", *args, str(out), "--resume", *opts], check=True, env=env, timeout=120)
    assert (out / "_SUCCESS").exists() and not list(out.glob(".*tmp"))
    again = invoke(*args, out, "--resume", *[o for o in opts if o != "-q"])
    assert again.exit_code == 0 and again.output.startswith(f"{out} is already complete: top-6 for 120 users "
                                                            "in 60 parts; nothing to do"), again.output
    names = sorted(p.name for p in out.glob("part-*"))
    assert names == sorted(p.name for p in clean.glob("part-*")) and len(names) == 60
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean))


SCRIPT = BLOCKER + textwrap.dedent("""
    import pandas as pd
    import recmodels.scoring as scoring
    from recmodels.cli import main

    bundle, out = sys.argv[1], sys.argv[2]
    seen = pd.DataFrame({"user_id": [1000, 1000], "item_id": [5, 8]})
    got = scoring.recommend(bundle, users=[1000, 1007], k=3, exclude_seen=seen, device="auto")
    assert len(got) == 6 and not {5, 8} & set(got["item_id"][:3]), got
    seen.to_csv(out + ".seen.csv", index=False)
    for extra in ([], ["--candidates", "10"]):
        try:
            main(["recommend", bundle, out, "-k", "4", "--exclude-seen", out + ".seen.csv", "--device", "cpu",
                  "-q", "--overwrite", *extra])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        assert len(pd.read_parquet(out)) == 4 * 50
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    print("ok")
""")


def test_recommend_imports_neither_torch_nor_sklearn(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="hybrid", folded=True)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(fb.path), str(tmp_path / "o.parquet")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
