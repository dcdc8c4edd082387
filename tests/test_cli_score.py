"""`recmodels score` on the command line: output, one-line errors, kill + --resume, disk full."""

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

from recmodels.cli import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    fb = make_bundle(root / "bundle", kind="neumf", folded=True)
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({
        "user_id": fb.user_ids[rng.integers(0, len(fb.user_ids), n)],
        "item_id": fb.item_ids[rng.integers(0, len(fb.item_ids), n)],
        "row": np.arange(n),
    })
    df.loc[::97, "user_id"] = 77  # unknown
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), root / "in.parquet",
                   row_group_size=100)
    return root, fb, df


def invoke(*args):
    return CliRunner().invoke(cli, ["score", *map(str, args)])


def test_cli_scores_and_reports(tmp_path, setup):
    root, fb, df = setup
    out, report = tmp_path / "o.parquet", tmp_path / "r.json"
    res = invoke(fb.path, root / "in.parquet", out, "--device", "cpu", "--report", report,
                 "--keep", "row", "--clip")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("scored 2,000 rows") and res.output.count("\n") == 1
    got = pd.read_parquet(out)
    ref, known = fb.reference_ids(df["user_id"], df["item_id"], clip=True)
    np.testing.assert_allclose(got["score"], ref, atol=1e-5)
    assert got["known"].tolist() == known.tolist()
    assert list(got.columns) == ["row", "known", "score"]
    rep = json.loads(report.read_text())
    assert rep["rows_read"] == 2000 and rep["unknown_users"] == (~known).sum()
    assert rep["provider"] == "cpu" and rep["rows_per_s"] > 0


def test_ids_are_written_in_the_bundle_type(tmp_path, setup):
    """CSV ids are read as text: written back as the bundle's integers, under the input's names;
    an id that cannot be an integer is an unknown id, written as null (issue 21)."""
    root, fb, df = setup
    frame = df.iloc[:20].copy()
    frame.to_csv(tmp_path / "in.csv", index=False)
    text = (tmp_path / "in.csv").read_text().splitlines()
    text[3] = "abc," + text[3].split(",", 1)[1]
    (tmp_path / "in.csv").write_text("\n".join(text) + "\n")
    res = invoke(fb.path, tmp_path / "in.csv", tmp_path / "o.parquet", "--device", "cpu", "-q")
    assert res.exit_code == 0, res.output
    schema = pq.read_schema(tmp_path / "o.parquet")
    assert schema.field("user_id").type == pa.int64() and schema.field("item_id").type == pa.int64()
    got = pd.read_parquet(tmp_path / "o.parquet")
    assert got["user_id"].isna().tolist() == [i == 2 for i in range(20)] and not got["known"][2]
    want = frame["user_id"].astype("Int64").where(np.arange(20) != 2)
    assert got["user_id"].astype("Int64").tolist() == want.tolist()
    assert got["item_id"].tolist() == frame["item_id"].tolist()
    recs = CliRunner().invoke(cli, ["recommend", str(fb.path), str(tmp_path / "r.parquet"), "-k", "2",
                                    "--device", "cpu", "-q"])
    assert recs.exit_code == 0, recs.output
    out = pq.read_schema(tmp_path / "r.parquet")
    assert [out.field(c).type for c in ("user_id", "item_id")] == [schema.field(c).type
                                                                   for c in ("user_id", "item_id")]


def test_cli_errors_are_one_line(tmp_path, setup):
    root, fb, _ = setup
    (tmp_path / "bad.csv").write_text("user_id,item_id\nx2,5\nx1,5\n")
    run = root / "a-run"  # what `recmodels train` writes: not a bundle
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text("{}")
    cases = [
        ([run, root / "in.parquet", tmp_path / "a.parquet"],
         f"{run} is a training run, not a bundle; export it first with `recmodels export {run} "),
        ([fb.path, root / "in.parquet", tmp_path / "a.parquet", "--format", "csv"],
         "--format csv does not match the .parquet name"),
        ([tmp_path / "nobundle", root / "in.parquet", tmp_path / "a.parquet"], "bundle"),
        ([fb.path, tmp_path / "nope.csv", tmp_path / "a.parquet"], "not found"),
        ([fb.path, tmp_path / "bad.csv", tmp_path / "a.parquet"], "are text but the bundle's are integer"),
        ([fb.path, root / "in.parquet", tmp_path / "a.parquet", "--user-col", "uid"], "uid"),
        ([fb.path, root / "in.parquet", tmp_path / "a.txt"], "format"),
        ([fb.path, root / "in.parquet", tmp_path / "a.parquet", "--unknown", "error"],
         "unknown user id 77 at data row 1;"),
    ]
    for args, needle in cases:
        res = invoke(*args, "--device", "cpu")
        assert res.exit_code == 1, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], res.output
        assert "Traceback" not in res.output
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


def test_cli_device_cuda_without_cuda_fails_in_one_line(tmp_path, setup):
    from recmodels.scoring.runtime.providers import create_session

    root, fb, _ = setup
    try:
        create_session(fb.path / "model.onnx", "cuda")
    except Exception:
        pass
    else:
        pytest.skip("CUDA is available here")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "recmodels", "score", str(fb.path), str(root / "in.parquet"),
         str(tmp_path / "o.parquet"), "--device", "cuda"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("Error: --device cuda:0:") and "\x1b[" not in proc.stderr
    assert not (tmp_path / "o.parquet").exists()
    args = [str(fb.path), str(root / "in.parquet"), str(tmp_path / "o.parquet"), "--device", "auto"]
    # auto where no GPU was asked for: on a machine without one, CPU without a word (issue 21)
    proc = subprocess.run(
        [sys.executable, "-c", WITH_GPU, "no", "score", *args], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "cpu" in proc.stdout
    # a machine with a GPU that CUDA does not get: one warning line, no onnxruntime log spew...
    (tmp_path / "o.parquet").unlink()
    proc = subprocess.run(
        [sys.executable, "-c", WITH_GPU, "yes", "score", *args], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("warning: CUDA unavailable") and proc.stderr.count("\n") == 1
    # ...and not before an error about the output
    proc = subprocess.run(
        [sys.executable, "-c", WITH_GPU, "yes", "score", *args], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("Error: ") and "already exists" in proc.stderr


WITH_GPU = textwrap.dedent("""
    import sys
    from recmodels.cli import main
    from recmodels.scoring.runtime import providers
    visible = sys.argv.pop(1) == "yes"
    providers.gpu_visible = lambda: visible
    sys.exit(main(sys.argv[1:]))
""")


CLI = [sys.executable, "-m", "recmodels", "score"]
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


def test_kill_and_resume_matches_clean_run(tmp_path, setup):
    root, fb, _ = setup
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [str(fb.path), str(root / "in.parquet")]
    opts = ["--device", "cpu", "--part-rows", "50", "--batch-size", "25", "-q"]
    clean = tmp_path / "clean"
    subprocess.run(CLI + args + [str(clean)] + opts, check=True, env=env, timeout=120)

    out = tmp_path / "out"
    # slowed down by monkeypatching the writer in the child process (no test hook in the library)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PARTS, "score"] + args + [str(out)] + opts, env=env)
    deadline = time.monotonic() + 60
    while len(list(out.glob("part-*"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("part-*")))
    assert 5 <= done < 40 and not (out / "_SUCCESS").exists()

    res = subprocess.run(CLI + args + [str(out)] + opts, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "--resume" in res.stderr
    subprocess.run(CLI + args + [str(out), "--resume"] + opts, check=True, env=env, timeout=120)
    assert (out / "_SUCCESS").exists() and not list(out.glob(".*tmp"))
    names = sorted(p.name for p in out.glob("part-*"))
    assert names == sorted(p.name for p in clean.glob("part-*"))
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean))


DISK_FULL = textwrap.dedent("""
    import resource, signal, sys
    from recmodels.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("out_name", ["o.csv", "odir"])
def test_disk_full_is_one_line_and_leaves_no_partial_file(tmp_path, setup, out_name):
    root, fb, _ = setup
    out = tmp_path / out_name
    proc = subprocess.run(
        [sys.executable, "-c", DISK_FULL, "score", str(fb.path), str(root / "in.parquet"),
         str(out), "--device", "cpu", "--format", "csv", "--part-rows", "1000"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0], proc.stderr
    leftovers = [p.name for p in tmp_path.rglob("*")]
    assert not [n for n in leftovers if n.endswith(".tmp") or n.startswith("part-")], leftovers
    assert not (tmp_path / "o.csv").exists()
