"""recmodels.dask: same rows as local scoring/recommend, one session per worker, retries, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from recmodels import dask as rdask  # noqa: E402
from recmodels.engines import worker as core  # noqa: E402
from recmodels.engines.contract import files_token  # noqa: E402
from recmodels.errors import BundleError, DataError  # noqa: E402
from recmodels.scoring import Scorer, recommend  # noqa: E402

N_ROWS = 6000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    fb = make_bundle(root / "bundle", kind="neumf", folded=True, n_users=60, n_items=45)
    rng = np.random.default_rng(7)
    users = np.append(fb.user_ids, [987654])  # one unknown user
    frame = pd.DataFrame(
        {
            "rid": np.arange(N_ROWS, dtype=np.int64),
            "user_id": rng.choice(users, N_ROWS),
            "item_id": rng.choice(fb.item_ids, N_ROWS),
            "day": rng.integers(1, 9, N_ROWS),
        }
    )
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), root / "pairs.parquet", row_group_size=1000
    )
    seen = frame[["user_id", "item_id"]].iloc[:1500]
    return root, fb, frame, seen


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def local_scores(fb, frame, **options):
    return Scorer(fb.path, device="cpu", **options).score_frame(frame)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, key="rid"):
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for col in want.columns:
        if col == "score":
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=0, atol=1e-6)
        else:
            assert (got[col].to_numpy() == want[col].to_numpy()).all(), col


def test_one_big_parquet_file_is_split_by_row_group(data):
    root, *_ = data
    assert rdask.read_input(root / "pairs.parquet").npartitions == N_ROWS // 1000


@pytest.mark.parametrize("unknown", ["fallback", "skip"])
def test_threaded_scheduler_gives_the_rows_of_local_scoring(data, unknown):
    root, fb, frame, _ = data
    ddf = dd.read_parquet(str(root / "pairs.parquet"), split_row_groups=True)
    scored = rdask.score(ddf, fb.path, unknown=unknown, device="cpu")
    assert list(scored._meta.columns) == list(local_scores(fb, frame.iloc[:1], unknown=unknown).columns)
    with dask.config.set(scheduler="threads"):
        got = scored.compute()
    assert_same_rows(got, local_scores(fb, frame, unknown=unknown))
    assert got["score"].dtype == np.float32


def test_score_to_writes_parts_success_and_the_local_report(data, tmp_path):
    root, fb, frame, _ = data
    ddf = rdask.read_input(root / "pairs.parquet")
    with dask.config.set(scheduler="threads"):
        rep = rdask.score_to(ddf, fb.path, tmp_path / "out", keep="rid", device="cpu")
    local = Scorer(fb.path, device="cpu").score_file(
        root / "pairs.parquet", tmp_path / "local.parquet", keep="rid"
    )
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["_SUCCESS", "_scoring.json"] + [f"part-{k:05d}.parquet" for k in range(6)]
    got = pd.read_parquet(tmp_path / "out")
    assert_same_rows(got, pd.read_parquet(tmp_path / "local.parquet"))
    for key in ("rows_read", "rows_written", "unknown_users", "unknown_rows", "unknown_items", "skipped"):
        assert getattr(rep, key) == getattr(local, key), key
    assert rep.unknown_rows > 0 and rep.parts_written == 6


def test_guard_over_the_whole_job_writes_nothing(data, tmp_path):
    root, fb, frame, _ = data
    bad = dd.from_pandas(frame.assign(user_id=frame.user_id + 10_000_000), npartitions=3)
    with dask.config.set(scheduler="threads"), pytest.raises(DataError, match="max-unknown-share"):
        rdask.score_to(bad, fb.path, tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()


def test_schema_mismatch_is_one_line_before_any_task(data):
    root, fb, frame, _ = data
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(DataError, match="no item id column 'book'"):
        rdask.score(ddf, fb.path, item_col="book")
    wrong = dd.from_pandas(frame.assign(item_id=frame.item_id > 3), npartitions=2)
    with pytest.raises(DataError, match="item id column 'item_id' is bool"):
        rdask.score(wrong, fb.path)


def test_bundle_workers_cannot_reach_is_one_line_on_the_driver(data, tmp_path, client):
    root, fb, frame, _ = data
    ddf = dd.from_pandas(frame, npartitions=2)
    client.run(core.clear_caches)  # no worker holds the bundle yet
    with pytest.raises(BundleError, match=r"cannot be read on worker .*bundle directory not found"):
        rdask.score_to(ddf, fb.path, tmp_path / "out", bundle_path=str(tmp_path / "nowhere"), client=client)
    assert not (tmp_path / "out").exists()


def test_local_cluster_same_rows_and_one_session_per_worker_process(data, tmp_path, client):
    root, fb, frame, _ = data
    client.run(core.clear_caches)
    ddf = dd.from_pandas(frame, npartitions=8)
    got = client.compute(rdask.score(ddf, fb.path, device="cpu")).result()
    assert_same_rows(got, local_scores(fb, frame))
    stats = client.run(lambda: dict(core.STATS))
    used = [s for s in stats.values() if s["scorers"]]
    once = {"bundle_loads": 1, "scorers": 1, "recommenders": 0, "folds": 0}
    assert used and all(s == once for s in used), stats


def test_history_is_folded_in_once_and_read_once_per_worker_process(tmp_path, client):
    """Issue 22 on Dask's Python API: ``history`` is folded in on the driver, its result is one
    object of the graph that each worker process reads once (not per partition), and the rows are
    the local ``Scorer`` / ``recommend`` rows (new users and items folded in; ``exclude_seen``
    also leaves out the history)."""
    rng = np.random.default_rng(3)
    train = rng.integers(0, 30, 1500), rng.integers(0, 40, 1500)
    fb = make_bundle(tmp_path / "b", kind="neumf", folded=True, prior=True, n_users=30, n_items=40,
                     train_rows=train, rating_range=(-10.0, 10.0))
    history = pd.DataFrame({"user_id": [7] * 5 + [fb.user_ids[0]] * 2 + [fb.user_ids[1], fb.user_ids[2]],
                            "item_id": [*fb.item_ids[:5], *fb.item_ids[8:10], 4, 4],
                            "rating": rng.uniform(-5, 5, 9).round(2)})
    frame = pd.DataFrame({"rid": np.arange(3000), "user_id": rng.choice(np.r_[fb.user_ids, [7]], 3000),
                          "item_id": rng.choice(np.r_[fb.item_ids, [4]], 3000)})
    client.run(core.clear_caches)
    options = dict(device="cpu", history=history, max_unknown_share=1.0)
    got = client.compute(rdask.score(dd.from_pandas(frame, npartitions=6), fb.path, **options)).result()
    want = Scorer(fb.path, **options).score_frame(frame)
    assert_same_rows(got, want)
    assert want.known.all()  # every pair scored as known: 7 and 4 are folded in
    stats = [s for s in client.run(lambda: dict(core.STATS)).values() if s["scorers"]]
    assert stats and all(s["folds"] == 1 for s in stats), stats
    users = dd.from_pandas(pd.DataFrame({"user_id": [7, *fb.user_ids[:8]]}), npartitions=2)
    seen = pd.DataFrame({"user_id": [fb.user_ids[3]] * 2, "item_id": fb.item_ids[:2]})
    recs = rdask.recommend(users, fb.path, 30, exclude_seen=dd.from_pandas(seen, npartitions=1), device="cpu",
                           history=history)
    got = client.compute(recs).result()
    want = recommend(fb.path, users=[7, *fb.user_ids[:8]], k=30, exclude_seen=seen, device="cpu",
                     history=history)
    assert_same_rows(got, want, key=["user_id", "rank"])
    assert not set(got.item_id[got.user_id == 7]) & set(history.item_id[history.user_id == 7])


def test_item_embeddings_in_the_python_api_give_the_local_rows(tmp_path, client):
    """``item_embeddings=`` (issue 22) on ``score``, ``score_to`` and ``recommend``: new hybrid items
    folded in on the driver from their vectors, scored and ranked as by the local ``Scorer`` /
    ``recommend`` (``exclude_seen`` pairs naming new items are left out)."""
    rng = np.random.default_rng(8)
    train = rng.integers(0, 30, 1500), rng.integers(0, 40, 1500)
    fb = make_bundle(tmp_path / "b", kind="hybrid", folded=True, prior=True, n_users=30, n_items=40,
                     pretrained_dim=3, train_rows=train, rating_range=(-10.0, 10.0))
    vectors = pd.DataFrame({"item_id": [9001, 9002], "a": [0.5, -1.0], "b": [2.0, 0.1], "c": [0.0, 1.5]})
    frame = pd.DataFrame({"rid": np.arange(2000), "user_id": rng.choice(fb.user_ids, 2000),
                          "item_id": rng.choice(np.r_[fb.item_ids, [9001, 9002]], 2000)})
    options = dict(device="cpu", item_embeddings=vectors)
    got = client.compute(rdask.score(dd.from_pandas(frame, npartitions=4), fb.path, **options)).result()
    want = Scorer(fb.path, **options).score_frame(frame)
    assert_same_rows(got, want)
    assert want.known.all()  # 9001 and 9002 are folded in from their vectors
    rep = rdask.score_to(dd.from_pandas(frame, npartitions=4), fb.path, tmp_path / "out", client=client,
                         **options)
    assert rep.unknown_rows == 0
    assert_same_rows(pd.read_parquet(tmp_path / "out"), want)
    users = dd.from_pandas(pd.DataFrame({"user_id": fb.user_ids[:8]}), npartitions=2)
    seen = pd.DataFrame({"user_id": fb.user_ids[:2], "item_id": [9001, 9002]})
    recs = rdask.recommend(users, fb.path, 38, exclude_seen=dd.from_pandas(seen, npartitions=1), **options)
    got = client.compute(recs).result()
    want = recommend(fb.path, users=fb.user_ids[:8], k=38, exclude_seen=seen, **options)
    assert_same_rows(got, want, key=["user_id", "rank"])
    assert 9001 not in set(got.item_id[got.user_id == fb.user_ids[0]]) and 9001 in set(got.item_id)


def test_recommend_partitioned_by_user_matches_local(data, client):
    root, fb, frame, seen = data
    users = dd.from_pandas(pd.DataFrame({"user_id": fb.user_ids}), npartitions=3)
    recs = rdask.recommend(users, fb.path, 4, exclude_seen=dd.from_pandas(seen, npartitions=2), device="cpu")
    got = client.compute(recs).result()
    want = recommend(fb.path, k=4, exclude_seen=seen, device="cpu")
    key = ["user_id", "rank"]
    got, want = got.sort_values(key).reset_index(drop=True), want.sort_values(key).reset_index(drop=True)
    assert len(got) == len(want) == 4 * len(fb.user_ids)
    assert (
        got[["user_id", "rank", "item_id"]].to_numpy() == want[["user_id", "rank", "item_id"]].to_numpy()
    ).all()
    np.testing.assert_allclose(got.score, want.score, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["one.parquet", "one.csv"])
def test_one_file_output_is_the_parts_in_order(data, tmp_path, name):
    root, fb, frame, _ = data
    ddf = rdask.read_input(root / "pairs.parquet")
    with dask.config.set(scheduler="threads"):
        rep = rdask.score_to(ddf, fb.path, tmp_path / name, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    got = pd.read_parquet(tmp_path / name) if name.endswith(".parquet") else pd.read_csv(tmp_path / name)
    want = local_scores(fb, frame)
    assert (got["rid"].to_numpy() == want["rid"].to_numpy()).all()  # input order
    np.testing.assert_allclose(got["score"], want["score"], atol=1e-6, rtol=0)
    assert rep.output_mode == "file" and rep.rows_written == N_ROWS


def _slow(frame: pd.DataFrame) -> pd.DataFrame:
    time.sleep(0.4)
    return frame


def test_in_process_workers_never_serve_an_input_that_changed_since_the_last_job(data, tmp_path):
    """The default local cluster's workers are threads of this process, so their caches outlive one
    job: a second job on the same paths after the files changed must read them again."""
    root, fb, frame, _ = data
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.Table.from_pandas(frame.iloc[:2000], preserve_index=False), src / "a.parquet")
    first = rdask.score_file(fb.path, src, tmp_path / "out1", device="cpu")
    assert first.rows_written == 2000
    pq.write_table(pa.Table.from_pandas(frame.iloc[2000:3500], preserve_index=False), src / "b.parquet")
    second = rdask.score_file(fb.path, src, tmp_path / "out2", device="cpu")
    assert second.rows_written == 3500
    assert len(pd.read_parquet(tmp_path / "out2")) == 3500

    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": fb.user_ids[:5]}).to_csv(users, index=False)
    rdask.recommend_file(fb.path, tmp_path / "rec1", k=3, users=str(users), device="cpu")
    time.sleep(0.01)  # a new modification time even on a coarse clock
    pd.DataFrame({"user_id": fb.user_ids[5:12]}).to_csv(users, index=False)
    rdask.recommend_file(fb.path, tmp_path / "rec2", k=3, users=str(users), device="cpu")
    got = pd.read_parquet(tmp_path / "rec2")
    assert sorted(set(got.user_id)) == sorted(fb.user_ids[5:12].tolist())
    assert core.STATS["bundle_loads"] == 0  # the cluster's stop emptied this process's caches


def test_killed_worker_is_retried_without_duplicated_or_missing_rows(data, tmp_path, client):
    """Last in the module: it kills one of the fixture's worker processes (the nanny restarts it)."""
    root, fb, frame, _ = data
    ddf = dd.from_pandas(frame, npartitions=12).map_partitions(_slow, meta=frame.iloc[:0])
    pids = list(client.run(os.getpid).values())
    outcome = {}

    def run():
        try:
            outcome["rep"] = rdask.score_to(ddf, fb.path, tmp_path / "out", client=client, device="cpu")
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    job = threading.Thread(target=run)
    job.start()
    deadline = time.time() + 30
    while time.time() < deadline and not list((tmp_path / "out").glob(".part-*.tmp")):
        time.sleep(0.05)
    os.kill(pids[0], signal.SIGKILL)
    job.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert pids[0] not in client.run(os.getpid).values(), "the worker was not replaced"
    got = pd.read_parquet(tmp_path / "out")
    assert_same_rows(got, local_scores(fb, frame))
    assert not list((tmp_path / "out").glob(".*")), "stray temporaries"
    assert outcome["rep"].rows_read == N_ROWS


def test_a_long_lived_worker_reads_an_input_again_once_its_files_changed(data, tmp_path):
    """The worker caches key inputs by their files' sizes and times (a ``--scheduler`` cluster's
    workers live across jobs)."""
    root, fb, frame, _ = data
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(pa.Table.from_pandas(frame.iloc[:100], preserve_index=False), src / "a.parquet")
    first = files_token(src)  # what the driver ships in the task
    assert core.worker_source(str(src), (), first).total_rows == 100
    assert core.worker_source(str(src), (), first) is core.worker_source(str(src), (), first)  # cached
    pq.write_table(pa.Table.from_pandas(frame.iloc[:50], preserve_index=False), src / "b.parquet")
    second = files_token(src)
    assert second != first and core.worker_source(str(src), (), second).total_rows == 150
    core.clear_caches()


def test_an_in_process_cluster_address_is_accepted(data, tmp_path):
    """``inproc://`` (a cluster in this process) is not TCP: no port probe, the engine connects."""
    root, fb, frame, _ = data
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    try:
        assert cluster.scheduler_address.startswith("inproc://")
        rep = rdask.score_file(fb.path, root / "pairs.parquet", tmp_path / "out",
                               scheduler=cluster.scheduler_address, device="cpu")
        assert rep.rows_written == N_ROWS
        # the cluster outlives the job (as a --scheduler cluster does): a changed input is read again
        src = tmp_path / "in"
        src.mkdir()
        pq.write_table(pa.Table.from_pandas(frame.iloc[:300], preserve_index=False), src / "a.parquet")
        assert rdask.score_file(fb.path, src, tmp_path / "o1", scheduler=cluster.scheduler_address,
                                device="cpu").rows_written == 300
        pq.write_table(pa.Table.from_pandas(frame.iloc[:200], preserve_index=False), src / "b.parquet")
        assert rdask.score_file(fb.path, src, tmp_path / "o2", scheduler=cluster.scheduler_address,
                                device="cpu").rows_written == 500
    finally:
        cluster.close()
        core.clear_caches()


def test_a_part_over_several_batches_is_the_local_part_byte_for_byte(tmp_path):
    """Issue 23: a task streams its part through the local pipeline in the local run's batches
    (multiples of the batch size counted from the input's first row, cut at part ends: for part
    1 here 4,576 + 8,192 + 7,232 rows, not 8,192 + 8,192 + 3,616) and writes them one by one.
    onnxruntime's last bit depends on which pairs share a batch, so only these batches give the
    local part files exactly; no row group holds more than a batch (a task never holds its part)."""
    fb = make_bundle(tmp_path / "bundle", kind="neumf", folded=True, n_users=600, n_items=450)
    rng = np.random.default_rng(7)
    n = 60_000
    frame = pd.DataFrame({"rid": np.arange(n), "user_id": rng.choice(fb.user_ids, n),
                          "item_id": rng.choice(fb.item_ids, n)})
    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), src, row_group_size=10_000)
    options = dict(keep="rid", device="cpu", batch_size=8192)
    rep = rdask.score_file(fb.path, src, tmp_path / "out", part_rows=20_000, **options)
    local = Scorer(fb.path, **{k: v for k, v in options.items() if k != "keep"}).score_file(
        src, tmp_path / "local", part_rows=20_000, keep="rid")
    assert rep.parts_written == local.parts_written == 3 and rep.rows_written == n
    for k in range(3):
        name = f"part-{k:05d}.parquet"
        got, want = pq.ParquetFile(tmp_path / "out" / name), pq.ParquetFile(tmp_path / "local" / name)
        groups = [[f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)]
                  for f in (got, want)]
        assert groups[0] == groups[1] and len(groups[0]) >= 3 and max(groups[0]) <= 8192, groups
        assert got.read().equals(want.read()), name
    core.clear_caches()


def test_a_part_task_reads_no_row_of_the_next_part(tmp_path, monkeypatch):
    """Issue 23: a task stops reading at its part's last batch (it read, and decoded, the next
    part's first batch, of the next row group: ~0.16 s of CPU per 1M-row part at 20M pairs)."""
    from recmodels.engines import driver
    from recmodels.tables import TableSource

    fb = make_bundle(tmp_path / "bundle", kind="mf", n_users=50, n_items=40)
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"user_id": rng.choice(fb.user_ids, 4000), "item_id": rng.choice(fb.item_ids, 4000)})
    src = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), src, row_group_size=1000)
    pulled = []
    batches = TableSource.batches

    def counted(self, *args, **kwargs):
        for start, batch in batches(self, *args, **kwargs):
            pulled.append(batch.num_rows)
            yield start, batch

    monkeypatch.setattr(TableSource, "batches", counted)
    task, _ = driver.score_task(fb.path, pq.read_schema(src), str(src), device="cpu", batch_size=500)
    (tmp_path / "out").mkdir()
    try:
        for part in (1, 3):  # a part in the middle, and the last one
            pulled.clear()
            record = core.score_input_part(task, str(src), part, 1000, str(tmp_path / "out"), "parquet")
            assert record["error"] == "" and record["rows_read"] == 1000
            assert sum(pulled) == 1000, pulled
    finally:
        core.clear_caches()


def _wide_csv(frame: pd.DataFrame, path, extra_columns: int = 298) -> None:
    zeros = pd.DataFrame(np.zeros((len(frame), extra_columns), dtype=np.int8),
                         columns=[f"c{j}" for j in range(extra_columns)])
    pd.concat([frame.reset_index(drop=True), zeros], axis=1).to_csv(path, index=False)


def test_csv_partitions_whose_text_columns_come_in_several_chunks(data, tmp_path, monkeypatch):
    """Issue 21 #1: pandas' CSV reader hands a partition's pyarrow-backed text columns in chunks
    (every ~262k rows of a two-column file, every 2,048 rows of a 300-column one), which the part
    writer could not take ('Cannot convert pyarrow.lib.ChunkedArray to pyarrow.lib.Array')."""
    root, fb, frame, _ = data
    src = tmp_path / "wide.csv"
    _wide_csv(frame, src)
    monkeypatch.setattr(rdask, "CSV_BLOCKSIZE", 1_500_000)  # several partitions of a small file
    ddf = rdask.read_input(src, ("user_id", "item_id"))
    assert ddf.npartitions >= 2
    first = pa.Table.from_pandas(ddf.partitions[0].compute(scheduler="sync"), preserve_index=False)
    assert first.column("user_id").num_chunks > 1  # the input that failed
    want = local_scores(fb, frame)[["rid", "known", "score"]]
    rep = rdask.score_file(fb.path, src, tmp_path / "out", keep="rid", device="cpu")
    assert rep.rows_read == N_ROWS and rep.parts_written == ddf.npartitions
    assert_same_rows(pd.read_parquet(tmp_path / "out"), want)
    lazy = rdask.score(ddf, fb.path, keep="rid", device="cpu").compute(scheduler="threads")
    assert_same_rows(lazy.reset_index(drop=True), want)


def test_csv_text_ids_follow_the_tables_null_rule(tmp_path):
    """A text id spelled NA (or null, nan) is an id, as recmodels.tables reads it, not a missing
    value (pandas' default); only an empty cell is missing."""
    ids = ["NA", "null", "nan", "u3", "u4"]
    fb = make_bundle(tmp_path / "bundle", kind="mf", id_kind="string", user_ids=ids, n_items=6)
    src = tmp_path / "pairs.csv"
    frame = pd.DataFrame({"user_id": ids * 4, "item_id": list(fb.item_ids[:5]) * 4})
    frame.to_csv(src, index=False)
    ddf = rdask.read_input(src, ("user_id", "item_id"))
    assert ddf.compute()["user_id"].tolist() == frame["user_id"].tolist()
    rep = rdask.score_file(fb.path, src, tmp_path / "out", device="cpu", unknown="error")
    assert rep.rows_written == len(frame) and rep.unknown_rows == 0
    got = pd.read_parquet(tmp_path / "out")
    want = Scorer(fb.path, device="cpu").score_frame(frame)
    np.testing.assert_allclose(np.sort(got.score.to_numpy()), np.sort(want.score.to_numpy()), atol=1e-6)


def test_an_unknown_id_under_unknown_error_is_one_line_without_a_worker_traceback(data, tmp_path):
    """Issue 21 #6: the task returns the error as its record, so Dask logs no 'Compute Failed'
    traceback; the command prints its one line and leaves nothing behind."""
    root, fb, frame, _ = data
    src = tmp_path / "pairs.csv"
    known = frame[frame.user_id != 987654].iloc[:1500]
    one_unknown = known.user_id.where(known.rid != known.rid.iloc[700], 987654)
    known.assign(user_id=one_unknown).to_csv(src, index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "recmodels", "score", fb.path, src, tmp_path / "out", "--engine", "dask",
         "--unknown", "error", "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("Error: unknown user id 987654")
    assert not (tmp_path / "out").exists()
