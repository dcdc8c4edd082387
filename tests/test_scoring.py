"""recmodels.scoring: scores vs a numpy reference, unknown-id policies, input and output modes,
resume, and bad input (all on CPU, with small factory bundles)."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import make_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recmodels.errors import BundleError, ConfigError, DataError, DeviceError, OutputError
from recmodels.scoring import Bundle, Scorer, score, score_frame
from recmodels.scoring.output.stream import rebatch

TOL = 1e-5


@pytest.fixture(scope="module")
def mf(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b") / "mf", kind="mf")


@pytest.fixture(scope="module")
def mf_scorer(mf):
    return Scorer(mf.path, device="cpu")


def pairs(fb, n, *, seed=0, unknown_frac=0.0, nulls=False):
    rng = np.random.default_rng(seed)
    users = fb.user_ids[rng.integers(0, len(fb.user_ids), n)].astype(np.int64)
    items = fb.item_ids[rng.integers(0, len(fb.item_ids), n)].astype(np.int64)
    if unknown_frac:
        bad = rng.random(n) < unknown_frac
        users = np.where(bad & (rng.random(n) < 0.5), -5 - np.arange(n), users)
        items = np.where(bad & (rng.random(n) < 0.5), 10**12 + np.arange(n), items)
    df = pd.DataFrame({"user_id": users, "item_id": items, "row": np.arange(n), "tag": "t"})
    if nulls:
        df["user_id"] = df["user_id"].astype("Int64")
        df.loc[df.index % 7 == 3, "user_id"] = pd.NA
    return df


def check_scores(fb, df_in, df_out, *, clip=False, from_csv=False):
    ref, known = fb.reference_ids(df_in["user_id"], df_in["item_id"], clip=clip)
    assert df_out["score"].dtype == (np.float64 if from_csv else np.float32)
    np.testing.assert_allclose(df_out["score"].to_numpy(), ref, atol=TOL, rtol=0)
    return known


@pytest.mark.parametrize(
    "kind,folded,id_kind",
    [("mf", False, "int64"), ("neumf", False, "int64"), ("neumf", True, "int64"),
     ("mf", False, "string")],
)
def test_scores_match_reference(tmp_path, kind, folded, id_kind):
    fb = make_bundle(tmp_path / "b", kind=kind, folded=folded, id_kind=id_kind)
    rng = np.random.default_rng(1)
    users = fb.user_ids[rng.integers(0, len(fb.user_ids), 3000)]
    items = fb.item_ids[rng.integers(0, len(fb.item_ids), 3000)]
    df = pd.DataFrame({"user_id": users, "item_id": items})
    out = score_frame(fb.path, df, device="cpu", batch_size=1000)
    known = check_scores(fb, df, out)
    assert known.all() and out["known"].all()
    assert Bundle.load(fb.path).manifest.model.folded == folded


def test_policies_on_frames(mf, mf_scorer):
    df = pairs(mf, 500, unknown_frac=0.2, nulls=True)
    out = mf_scorer.score_frame(df)
    known = check_scores(mf, df, out)
    assert (out["known"].to_numpy() == known).all() and (~known).sum() > 50
    assert (out.loc[~known, "score"] == np.float32(mf.fallback_score)).all()
    assert list(out.columns) == ["user_id", "item_id", "row", "tag", "known", "score"]

    skipped = Scorer(mf.path, device="cpu", unknown="skip").score_frame(df, keep="row")
    assert list(skipped.columns) == ["row", "score"]
    assert skipped["row"].tolist() == df["row"][known].tolist()
    np.testing.assert_allclose(skipped["score"], out["score"][known], atol=0)

    with pytest.raises(DataError, match="unknown (user|item) id"):
        Scorer(mf.path, device="cpu", unknown="error").score_frame(df)


def test_clip_and_bad_options(mf):
    df = pairs(mf, 200)
    clipped = score_frame(mf.path, df, device="cpu", clip=True)
    check_scores(mf, df, clipped, clip=True)
    with pytest.raises(ConfigError):
        Scorer(mf.path, device="cpu", unknown="ignore")
    with pytest.raises(DeviceError, match="device .tpu.; use auto, cpu, cuda"):
        Scorer(mf.path, device="tpu")
    with pytest.raises(ConfigError, match="clashes"):
        score_frame(mf.path, df.assign(score=1.0), device="cpu")
    # the id rules: integer text is the integer (so it scores alike); other text is unknown
    as_text = score_frame(mf.path, df.assign(user_id=df["user_id"].astype(str)), device="cpu")
    np.testing.assert_array_equal(as_text["score"], score_frame(mf.path, df, device="cpu")["score"])
    with pytest.warns(UserWarning, match="ids the bundle does not know"):
        other = score_frame(mf.path, df.assign(user_id="u" + df["user_id"].astype(str)), device="cpu")
    assert not other["known"].any()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=8),
    unknown_frac=st.sampled_from([0.0, 0.1, 0.6]),
    policy=st.sampled_from(["fallback", "skip"]),
    seed=st.integers(0, 10_000),
)
def test_batches_keep_order_and_count(mf, sizes, unknown_frac, policy, seed):
    """Random chunking with unknown ids mixed in: order, row counts and scores are invariant."""
    df = pairs(mf, sum(sizes), seed=seed, unknown_frac=unknown_frac)
    table = pa.Table.from_pandas(df, preserve_index=False)
    chunks, lo = [], 0
    for n in sizes:
        chunks.append(table.slice(lo, n).to_batches(max_chunksize=max(n, 1))[0] if n else
                      pa.RecordBatch.from_pylist([], schema=table.schema))
        lo += n
    scorer = Scorer(mf.path, device="cpu", unknown=policy, batch_size=17, max_unknown_share=1)
    outs = list(scorer.score_batches(iter(chunks)))
    assert len(outs) == len(chunks)
    got = pa.Table.from_batches(outs, schema=outs[0].schema).to_pandas()
    ref, known = mf.reference_ids(df["user_id"], df["item_id"])
    if policy == "skip":
        ref, expected_rows = ref[known], df["row"][known]
        assert scorer.counts["skipped"] == (~known).sum()
    else:
        expected_rows = df["row"]
        assert got["known"].tolist() == known.tolist()
    assert got["row"].tolist() == expected_rows.tolist()
    np.testing.assert_allclose(got["score"].to_numpy(), ref, atol=TOL)


@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=10),
    size=st.integers(1, 40),
    cut=st.one_of(st.none(), st.integers(1, 60)),
    start=st.integers(0, 30),
)
@settings(max_examples=60, deadline=None)
def test_rebatch_cuts_at_boundaries(sizes, size, cut, start):
    rows = np.arange(start, start + sum(sizes))
    stream, lo = [], start
    for n in sizes:
        stream.append((lo, pa.record_batch({"r": rows[lo - start: lo - start + n]})))
        lo += n
    out = list(rebatch(iter(stream), size, cut))
    got = np.concatenate([b.column(0).to_numpy() for _, b in out])
    assert got.tolist() == rows.tolist()
    for first, batch in out:
        assert batch.column(0)[0].as_py() == first
        assert batch.num_rows <= size
        last = first + batch.num_rows - 1
        assert first // size == last // size
        if cut:
            assert first // cut == last // cut


def write_input(df, path, kind):
    if kind == "csv":
        df.to_csv(path, index=False)
    elif kind == "csv.gz":
        with gzip.open(path, "wt") as fh:
            df.to_csv(fh, index=False)
    elif kind == "parquet":
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=97)
    elif kind == "dir":
        os.makedirs(path)
        for k, lo in enumerate(range(0, len(df), 230)):
            part = df.iloc[lo:lo + 230]
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False),
                           os.path.join(path, f"f{k:03d}.parquet"), row_group_size=50)
        open(os.path.join(path, "_SUCCESS"), "w").close()
    return path


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet", "dir"])
@pytest.mark.parametrize("out_kind", ["out.parquet", "out.csv", "outdir"])
def test_file_inputs_and_outputs(tmp_path, mf, kind, out_kind):
    df = pairs(mf, 1000, unknown_frac=0.05, seed=3)
    src = write_input(df, str(tmp_path / f"in.{kind}" if kind != "dir" else tmp_path / "in"), kind)
    out = tmp_path / out_kind
    rep = score(mf.path, src, out, device="cpu", batch_size=128, part_rows=300,
                report=tmp_path / "r.json")
    got = pd.read_csv(out) if out_kind.endswith(".csv") else pd.read_parquet(out)
    if out_kind == "outdir":
        names = sorted(os.listdir(out))
        assert "_SUCCESS" in names and [n for n in names if n.startswith("part-")] == [
            f"part-{k:05d}.parquet" for k in range(4)]
        assert not [n for n in names if n.endswith(".tmp")]
    check_scores(mf, df, got, from_csv=out_kind.endswith(".csv"))
    assert got["row"].tolist() == list(range(1000))
    assert got["tag"].tolist() == ["t"] * 1000
    known = mf.reference_ids(df["user_id"], df["item_id"])[1]
    assert rep.rows_read == rep.rows_written == 1000
    assert rep.unknown_rows == (~known).sum() > 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["provider"] == "cpu" and data["rows_read"] == 1000
    assert set(data) >= {"rows_read", "rows_written", "unknown_users", "unknown_items", "skipped",
                         "provider", "seconds", "rows_per_s"}


def test_glob_hive_partitions_and_column_overrides(tmp_path, mf):
    df = pairs(mf, 400, seed=5).rename(columns={"user_id": "u", "item_id": "i"})
    for day, part in df.groupby(df["row"] % 2):
        d = tmp_path / "in" / f"day={day}"
        d.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), d / "a.parquet")
    out = tmp_path / "o.parquet"
    rep = score(mf.path, tmp_path / "in", out, device="cpu", user_col="u", item_col="i",
                keep=["row", "day"])
    got = pd.read_parquet(out)
    assert list(got.columns) == ["row", "day", "known", "score"] and rep.rows_read == 400
    assert sorted(got["row"]) == list(range(400))
    assert (got["day"].astype(int) == got["row"] % 2).all()
    # a glob over the same files, in sorted path order
    out2 = tmp_path / "o2.csv"
    score(mf.path, str(tmp_path / "in" / "day=*" / "*.parquet"), out2, device="cpu",
          user_col="u", item_col="i", keep="row")
    assert pd.read_csv(out2)["row"].tolist() == got["row"].tolist()


def test_skip_policy_file_counts(tmp_path, mf):
    df = pairs(mf, 700, unknown_frac=0.3, nulls=True, seed=9)
    src = write_input(df, tmp_path / "in.parquet", "parquet")
    rep = score(mf.path, src, tmp_path / "out", device="cpu", unknown="skip", part_rows=256,
                batch_size=64)
    got = pd.read_parquet(tmp_path / "out")
    _, known = mf.reference_ids(df["user_id"], df["item_id"])
    assert "known" not in got.columns
    assert got["row"].tolist() == df["row"][known].tolist()
    assert rep.skipped == rep.unknown_rows == (~known).sum()
    assert rep.null_ids == df["user_id"].isna().sum() > 0
    assert rep.rows_written == known.sum() and rep.rows_read == 700


def test_error_policy_names_id_and_row_and_leaves_nothing(tmp_path, mf):
    df = pairs(mf, 300)
    df.loc[217, "item_id"] = 424242
    src = write_input(df, tmp_path / "in.csv", "csv")
    for out in (tmp_path / "o.parquet", tmp_path / "odir"):
        with pytest.raises(DataError, match=r"unknown item id 424242 at data row 218;"):
            score(mf.path, src, out, device="cpu", unknown="error", part_rows=100, batch_size=50)
        assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_resume_skips_complete_parts(tmp_path, mf):
    df = pairs(mf, 1000, seed=11)
    src = write_input(df, tmp_path / "in.parquet", "parquet")
    out = tmp_path / "out"
    kw = dict(device="cpu", part_rows=128, batch_size=64)
    score(mf.path, src, out, **kw)
    clean = pd.read_parquet(out)
    # simulate a run killed after part 3: later parts gone, part 5 half-written, no _SUCCESS
    for k in range(4, 8):
        (out / f"part-{k:05d}.parquet").unlink()
        if k != 5:
            (out / f"_part-{k:05d}.json").unlink()
    (out / ".part-00004.parquet.123.tmp").write_bytes(b"PAR1 half")
    (out / "_SUCCESS").unlink()
    with pytest.raises(OutputError, match="--resume"):
        score(mf.path, src, out, **kw)
    rep = score(mf.path, src, out, resume=True, **kw)
    assert rep.parts_resumed == 4 and rep.rows_resumed == 512 and rep.rows_read == 488
    assert rep.parts_written == 4
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean)
    assert (out / "_SUCCESS").exists() and not list(out.glob("*.tmp"))
    # a corrupted (replaced) part is detected and rewritten
    (out / "part-00002.parquet").write_bytes(b"garbage")
    rep = score(mf.path, src, out, resume=True, **kw)
    assert rep.parts_written == 1
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean)
    # settings must match the original run
    with pytest.raises(OutputError, match="different settings"):
        score(mf.path, src, out, resume=True, unknown="skip", **kw)
    rep = score(mf.path, src, out, overwrite=True, **kw)
    assert rep.parts_written == 8
    with pytest.raises(ConfigError):
        score(mf.path, src, tmp_path / "x.parquet", resume=True, **kw)


@pytest.mark.parametrize("layout", ["row-groups", "files"])
def test_resume_mid_input_reads_from_the_right_row(tmp_path, mf, layout):
    """Resuming skips whole row groups / files before the first missing part, and no more."""
    df = pairs(mf, 1000, seed=12)
    if layout == "row-groups":
        src = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), src, row_group_size=90)
    else:
        src = tmp_path / "in"
        src.mkdir()
        for k, lo in enumerate(range(0, 1000, 300)):
            df.iloc[lo : lo + 300].to_parquet(src / f"f{k}.parquet", index=False)
    out = tmp_path / "out"
    kw = dict(device="cpu", part_rows=128, batch_size=50)
    score(mf.path, src, out, **kw)
    clean = pd.read_parquet(out)
    for k in range(3, 8):  # parts 3.. start at row 384, inside a row group / the second file
        (out / f"part-{k:05d}.parquet").unlink()
        (out / f"_part-{k:05d}.json").unlink()
    (out / "_SUCCESS").unlink()
    rep = score(mf.path, src, out, resume=True, **kw)
    assert rep.parts_resumed == 3 and rep.parts_written == 5
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean)


def test_existing_file_output_refused_then_overwritten(tmp_path, mf):
    src = write_input(pairs(mf, 50), tmp_path / "in.csv", "csv")
    out = tmp_path / "o.csv"
    out.write_text("keep me")
    with pytest.raises(OutputError, match="already exists"):
        score(mf.path, src, out, device="cpu")
    assert out.read_text() == "keep me"
    score(mf.path, src, out, device="cpu", overwrite=True)
    assert len(pd.read_csv(out)) == 50


def test_bad_inputs(tmp_path, mf):
    def run(src, **kw):
        score(mf.path, src, tmp_path / "o.parquet", device="cpu", **kw)

    with pytest.raises(DataError, match="not found"):
        run(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        run(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("user_id,item_id\n")
    with pytest.raises(DataError, match="no rows"):
        run(tmp_path / "header.csv")
    (tmp_path / "ragged.csv").write_text("user_id,item_id,x\n1000,5,1\n1007,8\n")
    with pytest.raises(DataError, match="ragged"):
        run(tmp_path / "ragged.csv")
    (tmp_path / "noid.csv").write_text("user,item_id\n1000,5\n")
    with pytest.raises(DataError, match="no user id column 'user_id'"):
        run(tmp_path / "noid.csv")
    (tmp_path / "strid.csv").write_text("user_id,item_id\nabd,5\nabc,5\n")
    with pytest.raises(DataError, match="2 of 2 rows .* the input's user ids .* are text but"):
        run(tmp_path / "strid.csv")
    pq.write_table(pa.table({"user_id": ["a"], "item_id": [5]}), tmp_path / "str.parquet")
    with pytest.raises(DataError, match="1 of 1 rows .* does not know"):
        run(tmp_path / "str.parquet")
    good = write_input(pairs(mf, 500), tmp_path / "good.parquet", "parquet")
    data = open(good, "rb").read()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated"):
        run(tmp_path / "trunc.parquet")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="no data files"):
        run(tmp_path / "emptydir")
    with pytest.raises(DataError, match="no input files match"):
        run(str(tmp_path / "nothing-*.parquet"))
    assert not (tmp_path / "o.parquet").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_bad_bundles(tmp_path, mf):
    with pytest.raises(BundleError, match="not found"):
        Scorer(tmp_path / "nope", device="cpu")
    fb = make_bundle(tmp_path / "b")
    with open(fb.path / "model.onnx", "r+b") as fh:
        fh.seek(40)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="sha256"):
        Scorer(fb.path, device="cpu")


def test_unwritable_output(tmp_path, mf):
    src = write_input(pairs(mf, 20), tmp_path / "in.csv", "csv")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in (blocker / "o.parquet", blocker / "dir"):
        with pytest.raises(OutputError, match="cannot create output directory"):
            score(mf.path, src, out, device="cpu")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root ignores permissions
            for out in (ro / "o.parquet", ro / "dir"):
                with pytest.raises(OutputError, match="not writable|cannot"):
                    score(mf.path, src, out, device="cpu")
    finally:
        ro.chmod(0o700)


def test_score_indices_matches_reference_and_checks_ranges(mf):
    scorer = Scorer(mf.path, device="cpu", batch_size=7)
    rng = np.random.default_rng(3)
    u = rng.integers(0, len(mf.user_ids), 50)
    i = rng.integers(0, len(mf.item_ids), 50)
    np.testing.assert_allclose(scorer.score_indices(u, i), mf.reference(u, i), atol=TOL)
    with pytest.raises(DataError, match="item index out of range"):
        scorer.score_indices(u[:1], np.array([len(mf.item_ids)]))
