"""recmodels.spark in local mode: same rows as local scoring/recommend, retries, bad input, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner
from conftest import assert_one_line_failure

pyspark = pytest.importorskip("pyspark")

from pyspark.sql import SparkSession  # noqa: E402

from recmodels import spark as rspark  # noqa: E402
from recmodels.cli import cli  # noqa: E402
from recmodels.engines import worker as core  # noqa: E402
from recmodels.errors import BundleError, DataError  # noqa: E402
from recmodels.scoring import Scorer, recommend  # noqa: E402

N_ROWS = 4000


@pytest.fixture(scope="module")
def spark():
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    session = (
        SparkSession.builder.master("local[2,2]")  # 2 threads; a failed task is tried twice
        .appName("recmodels-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "3")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark")
    fb = make_bundle(root / "bundle", kind="neumf", folded=True, n_users=50, n_items=40)
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "rid": np.arange(N_ROWS, dtype=np.int64),
            "user_id": rng.choice(np.append(fb.user_ids, [424242]), N_ROWS),
            "item_id": rng.choice(fb.item_ids, N_ROWS),
        }
    )
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), root / "pairs.parquet", row_group_size=1000
    )
    seen = frame[["user_id", "item_id"]].iloc[:1200]
    pq.write_table(pa.Table.from_pandas(seen, preserve_index=False), root / "seen.parquet")
    return root, fb, frame, seen


def local_scores(fb, frame, **options):
    return Scorer(fb.path, device="cpu", **options).score_frame(frame)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, key=("rid",)):
    got = got.sort_values(list(key)).reset_index(drop=True)
    want = want.sort_values(list(key)).reset_index(drop=True)
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for col in want.columns:
        if col == "score":
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=0, atol=1e-6)
        else:
            assert (got[col].to_numpy() == want[col].to_numpy()).all(), col


def pairs(spark, data, partitions=3):
    root = data[0]
    return spark.read.parquet(str(root / "pairs.parquet")).repartition(partitions)


@pytest.mark.parametrize("unknown", ["fallback", "skip"])
def test_score_gives_the_rows_of_local_scoring(spark, data, unknown):
    _, fb, frame, _ = data
    got = rspark.score(pairs(spark, data), fb.path, unknown=unknown, device="cpu").toPandas()
    assert_same_rows(got, local_scores(fb, frame, unknown=unknown))


def _on_python_workers(spark, fn, schema: str):
    """Run ``fn() -> dict`` in the Arrow Python workers that ``mapInArrow`` uses, once per task."""

    def run(batches):
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pylist([fn()])

    return [r.asDict() for r in spark.range(8).repartition(4).mapInArrow(run, schema).collect()]


def _clearer():
    def clear():  # nested, so cloudpickle ships it by value (workers cannot import this module)
        core.clear_caches()
        return {"pid": os.getpid()}

    return clear


def test_shipped_bundle_and_one_session_per_python_worker(spark, data):
    _, fb, frame, _ = data
    _on_python_workers(spark, _clearer(), "pid long")
    got = rspark.score(pairs(spark, data, 6), fb.path, ship=True, device="cpu").toPandas()
    assert_same_rows(got, local_scores(fb, frame))
    stats = _on_python_workers(
        spark,
        lambda: {"pid": os.getpid(), **core.STATS},
        "pid long, bundle_loads long, scorers long, recommenders long",
    )
    used = [s for s in stats if s["scorers"]]
    assert used and all(s["scorers"] == 1 and s["bundle_loads"] == 1 for s in used), stats


def test_score_to_writes_parts_success_and_the_local_report(spark, data, tmp_path):
    root, fb, frame, _ = data
    rep = rspark.score_to(pairs(spark, data), fb.path, tmp_path / "out", device="cpu")
    local = Scorer(fb.path, device="cpu").score_file(root / "pairs.parquet", tmp_path / "local.parquet")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "_SUCCESS",
        "_scoring.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    assert_same_rows(pd.read_parquet(tmp_path / "out"), pd.read_parquet(tmp_path / "local.parquet"))
    for key in ("rows_read", "rows_written", "unknown_users", "unknown_items", "unknown_rows"):
        assert getattr(rep, key) == getattr(local, key), key


def test_a_task_that_fails_once_is_retried_with_identical_output(spark, data, tmp_path):
    _, fb, frame, _ = data
    marker = str(tmp_path / "failed-once")

    def flaky(batches):  # partition 1 fails after its first batch, on its first attempt only
        from pyspark import TaskContext

        ctx = TaskContext.get()
        for i, batch in enumerate(batches):
            yield batch
            if ctx.partitionId() == 1 and i == 0 and not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected failure")

    df = pairs(spark, data)
    df = df.mapInArrow(flaky, df.schema)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "500")
    try:
        rspark.score_to(df, fb.path, tmp_path / "out", device="cpu")
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert os.path.exists(marker), "the failure was not injected"
    assert_same_rows(pd.read_parquet(tmp_path / "out"), local_scores(fb, frame))
    assert not list((tmp_path / "out").glob(".*")), "stray temporaries"


def test_schema_mismatch_is_one_line_before_any_task(spark, data):
    _, fb, frame, _ = data
    df = pairs(spark, data)
    with pytest.raises(DataError, match="no user id column 'uid'"):
        rspark.score(df, fb.path, user_col="uid")
    wrong = df.withColumn("item_id", df.item_id > 3)
    with pytest.raises(DataError, match="item id column 'item_id' is bool"):
        rspark.score(wrong, fb.path)


def test_bundle_executors_cannot_reach_is_one_line_on_the_driver(spark, data, tmp_path):
    _, fb, *_ = data
    _on_python_workers(spark, _clearer(), "pid long")  # no worker holds the bundle yet
    with pytest.raises(BundleError, match=r"cannot be read on worker .*bundle directory not found") as info:
        rspark.score_to(pairs(spark, data), fb.path, tmp_path / "out", bundle_path=str(tmp_path / "nowhere"))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_recommend_partitioned_by_user_matches_local(spark, data):
    _, fb, _, seen = data
    users = spark.createDataFrame(pd.DataFrame({"user_id": fb.user_ids}))
    got = rspark.recommend(
        users, fb.path, 4, exclude_seen=spark.createDataFrame(seen), device="cpu"
    ).toPandas()
    want = recommend(fb.path, k=4, exclude_seen=seen, device="cpu")
    assert_same_rows(got, want, key=("user_id", "rank"))


def test_cli_score_and_recommend_with_engine_spark(spark, data, tmp_path):
    """The CLI reuses this module's session (a session the CLI did not start is not stopped)."""
    root, fb, frame, seen = data
    res = CliRunner().invoke(
        cli,
        [
            "score",
            str(fb.path),
            str(root / "pairs.parquet"),
            str(tmp_path / "s"),
            "--engine",
            "spark",
            "--master",
            "local[2]",
            "--device",
            "cpu",
            "--keep",
            "rid",
            "--part-rows",
            "1500",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "scored 4,000 rows" in res.output
    local = Scorer(fb.path, device="cpu")
    local.score_file(root / "pairs.parquet", tmp_path / "local", keep="rid", part_rows=1500)
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir())
    for name in (n for n in names if n.startswith("part-")):  # the parts of a local run, in input order
        got, want = pd.read_parquet(tmp_path / "s" / name), pd.read_parquet(tmp_path / "local" / name)
        assert (got.rid.to_numpy() == want.rid.to_numpy()).all()
        np.testing.assert_allclose(got.score, want.score, atol=1e-6, rtol=0)
    res = CliRunner().invoke(
        cli,
        [
            "recommend",
            str(fb.path),
            str(tmp_path / "r"),
            "-k",
            "3",
            "--exclude-seen",
            str(root / "seen.parquet"),
            "--engine",
            "spark",
            "--device",
            "cpu",
            "--part-users",
            "20",
        ],
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "r").glob("part-*")) == [
        f"part-{k:05d}.parquet" for k in range(3)
    ]
    want = recommend(fb.path, k=3, exclude_seen=seen, device="cpu")
    assert_same_rows(pd.read_parquet(tmp_path / "r"), want, key=("user_id", "rank"))
    assert not spark.sparkContext._jsc.sc().isStopped()


def test_cli_missing_id_column_with_engine_spark_is_one_line(spark, data, tmp_path):
    root, fb, *_ = data
    res = CliRunner().invoke(
        cli,
        [
            "score",
            str(fb.path),
            str(root / "pairs.parquet"),
            str(tmp_path / "s"),
            "--engine",
            "spark",
            "--item-col",
            "book_id",
        ],
    )
    assert_one_line_failure(res, "no item id column 'book_id'")
    assert not (tmp_path / "s").exists()


def test_cli_bad_input_on_spark_is_the_one_line_alone(data, tmp_path):
    """Issue 21 #6 and the JVM's noise: a run of its own (a new JVM), an unknown id under
    ``--unknown error``. Before: ~10 lines of JVM warnings, pyspark's FutureWarning about pandas
    >= 3 and ~45 lines of Java and Python traceback around the right final line."""
    root, fb, frame, _ = data
    src = tmp_path / "pairs.csv"
    known = frame[frame.user_id != 424242].iloc[:500]
    one_unknown = known.user_id.where(known.rid != known.rid.iloc[300], 424242)
    known.assign(user_id=one_unknown).to_csv(src, index=False)
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_LOCAL_IP", "PYSPARK_GATEWAY_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "recmodels", "score", str(fb.path), str(src), str(tmp_path / "out"),
         "--engine", "spark", "--master", "local[2]", "--unknown", "error", "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("Error: unknown user id 424242")
    assert not (tmp_path / "out").exists()


def test_a_real_standalone_master_passes_the_address_check(tmp_path):
    """check_master's one RPC request is answered by a real master at once (a wrong port is one
    line, tests/test_engines_cli.py); started from pyspark's own scripts, no worker needed."""
    import socket
    import time

    spark_class = os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-class")
    if not os.path.exists(spark_class):
        pytest.skip("pyspark has no bin/spark-class")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SPARK_HOME=os.path.dirname(pyspark.__file__), SPARK_LOG_DIR=str(tmp_path))
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # until the master listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and master.poll() is None, "the master did not start"
                time.sleep(0.5)
        t0 = time.perf_counter()
        assert rspark.check_master(f"spark://127.0.0.1:{port}") is True  # it answered as Spark
        assert time.perf_counter() - t0 < 5
    finally:
        master.terminate()
        master.wait(30)


def test_cli_history_on_spark_is_the_local_output(spark, tmp_path):
    """``--history`` on Spark (issue 22): folded in once on the driver, read once per Python
    worker; score parts and recommend parts (``--exclude-seen`` leaves out the history) equal the
    local run's byte for byte, and nothing staged is left behind."""
    rng = np.random.default_rng(4)
    train = rng.integers(0, 30, 1500), rng.integers(0, 40, 1500)
    fb = make_bundle(tmp_path / "bundle", kind="neumf", folded=True, prior=True, n_users=30, n_items=40,
                     train_rows=train, rating_range=(-10.0, 10.0))
    pairs = pd.DataFrame({"rid": np.arange(2000), "user_id": rng.choice(np.r_[fb.user_ids, [7, 9]], 2000),
                          "item_id": rng.choice(np.r_[fb.item_ids, [4]], 2000)})
    pq.write_table(pa.Table.from_pandas(pairs, preserve_index=False), tmp_path / "pairs.parquet",
                   row_group_size=400)
    pd.DataFrame({"user_id": [7] * 5 + [fb.user_ids[0]] * 2 + [fb.user_ids[1], fb.user_ids[2]],
                  "item_id": [*fb.item_ids[:5], *fb.item_ids[8:10], 4, 4],
                  "rating": rng.uniform(-5, 5, 9).round(2)}).to_csv(tmp_path / "h.csv", index=False)
    runs = {
        "score": ["score", fb.path, tmp_path / "pairs.parquet", "--part-rows", 700, "--batch-size", 256,
                  "--max-unknown-share", 1],
        "recommend": ["recommend", fb.path, "-k", 35, "--exclude-seen", tmp_path / "h.csv",
                      "--part-users", 12],
    }
    for command, args in runs.items():
        out = [*args[:2], tmp_path / f"{command}-spark", *args[2:]] if command == "recommend" else \
            [*args[:3], tmp_path / f"{command}-spark", *args[3:]]
        local = [a if a != tmp_path / f"{command}-spark" else tmp_path / f"{command}-local" for a in out]
        common = ["--device", "cpu", "--history", tmp_path / "h.csv"]
        res = CliRunner().invoke(cli, [str(a) for a in [*out, *common, "--engine", "spark", "--master",
                                                         "local[2]"]])
        assert res.exit_code == 0, res.output
        assert "history: 1 new users" in res.output
        assert CliRunner().invoke(cli, [str(a) for a in [*local, *common]]).exit_code == 0
        parts = sorted(p.name for p in (tmp_path / f"{command}-local").glob("part-*"))
        assert len(parts) >= 3
        assert sorted(p.name for p in (tmp_path / f"{command}-spark").iterdir()
                      if p.name.startswith(("part-", "."))) == parts
        for name in parts:
            got = pq.read_table(tmp_path / f"{command}-spark" / name)
            assert got.equals(pq.read_table(tmp_path / f"{command}-local" / name)), (command, name)


def test_cli_item_embeddings_on_spark_is_the_local_output(spark, tmp_path):
    """``--item-embeddings`` on Spark (issue 22): new hybrid items folded in once on the driver;
    score parts and recommend parts (``--exclude-seen`` pairs naming a new item left out) equal
    the local run's byte for byte."""
    rng = np.random.default_rng(5)
    train = rng.integers(0, 30, 1500), rng.integers(0, 40, 1500)
    fb = make_bundle(tmp_path / "bundle", kind="hybrid", folded=True, prior=True, n_users=30, n_items=40,
                     pretrained_dim=3, train_rows=train, rating_range=(-10.0, 10.0))
    pd.DataFrame({"item_id": [9001, 9002], "a": [0.5, -1.0], "b": [2.0, 0.1], "c": [0.0, 1.5]}).to_csv(
        tmp_path / "v.csv", index=False)
    pairs = pd.DataFrame({"rid": np.arange(2000), "user_id": rng.choice(fb.user_ids, 2000),
                          "item_id": rng.choice(np.r_[fb.item_ids, [9001, 9002]], 2000)})
    pq.write_table(pa.Table.from_pandas(pairs, preserve_index=False), tmp_path / "pairs.parquet",
                   row_group_size=400)
    pd.DataFrame({"user_id": fb.user_ids[:3], "item_id": [9001, 9002, 9001]}).to_csv(tmp_path / "seen.csv",
                                                                                     index=False)
    runs = {"score": ["score", fb.path, tmp_path / "pairs.parquet", "--part-rows", 700],
            "recommend": ["recommend", fb.path, "-k", 30, "--exclude-seen", tmp_path / "seen.csv",
                          "--part-users", 12]}
    for command, args in runs.items():
        at = 3 if command == "score" else 2
        common = [*args[at:], "--device", "cpu", "--item-embeddings", tmp_path / "v.csv"]
        spark_out, local_out = tmp_path / f"{command}-spark", tmp_path / f"{command}-local"
        res = CliRunner().invoke(cli, [str(a) for a in [*args[:at], spark_out, *common, "--engine", "spark",
                                                         "--master", "local[2]"]])
        assert res.exit_code == 0, res.output
        assert CliRunner().invoke(cli, [str(a) for a in [*args[:at], local_out, *common]]).exit_code == 0
        parts = sorted(p.name for p in local_out.glob("part-*"))
        assert len(parts) >= 3
        assert sorted(p.name for p in spark_out.iterdir() if p.name.startswith(("part-", "."))) == parts
        for name in parts:
            assert pq.read_table(spark_out / name).equals(pq.read_table(local_out / name)), (command, name)
    scores, recs = pd.read_parquet(tmp_path / "score-spark"), pd.read_parquet(tmp_path / "recommend-spark")
    assert scores.known.all() and {9001, 9002} <= set(recs.item_id)
    for user, item in zip(fb.user_ids[:3], [9001, 9002, 9001], strict=True):
        assert item not in set(recs.item_id[recs.user_id == user])


def test_python_api_history_is_broadcast_and_gives_the_local_rows(spark, tmp_path):
    """``rspark.score`` / ``rspark.recommend`` with ``history``: folded in on the driver, broadcast."""
    rng = np.random.default_rng(6)
    train = rng.integers(0, 30, 1500), rng.integers(0, 40, 1500)
    fb = make_bundle(tmp_path / "b", kind="mf", folded=True, prior=True, n_users=30, n_items=40,
                     train_rows=train, rating_range=(-10.0, 10.0))
    history = pd.DataFrame({"user_id": [7] * 4 + [fb.user_ids[0]] * 2, "item_id": [*fb.item_ids[:5], 4],
                            "rating": rng.uniform(-5, 5, 6).round(2)})
    frame = pd.DataFrame({"rid": np.arange(1000), "user_id": rng.choice(np.r_[fb.user_ids, [7]], 1000),
                          "item_id": rng.choice(fb.item_ids, 1000)})
    got = rspark.score(spark.createDataFrame(frame).repartition(3), fb.path, device="cpu", history=history)
    want = Scorer(fb.path, device="cpu", history=history).score_frame(frame)
    assert_same_rows(got.toPandas(), want)
    users = spark.createDataFrame(pd.DataFrame({"user_id": [7, *fb.user_ids[:5]]}))
    got = rspark.recommend(users, fb.path, 30, device="cpu", history=history).toPandas()
    want = recommend(fb.path, users=[7, *fb.user_ids[:5]], k=30, device="cpu", history=history)
    assert_same_rows(got, want, key=("user_id", "rank"))
