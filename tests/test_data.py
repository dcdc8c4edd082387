"""Reading, validating, splitting, encoding and describing interactions (recmodels.data)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recmodels.data import (
    Columns,
    EncodedRatings,
    describe,
    encode,
    fit_encoders,
    format_stats,
    load_encoded,
    read_interactions,
    save_encoded,
    split_interactions,
)
from recmodels.errors import ConfigError, DataError, row_label
from recmodels.ids import fit_kind

BOOKS = Columns(item="book_id")


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def notebook_csv(tmp_path):
    return write(
        tmp_path / "ratings.csv",
        "user_id,book_id,rating,extra\n"
        "6,16002136,5,a\n6,17277800,4,b\n7,16002136,3,c\n8,19358975,1,d\n",
    )


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def test_read_csv_keeps_exactly_the_configured_columns(notebook_csv):
    df = read_interactions(notebook_csv, BOOKS)
    assert list(df.columns) == ["user_id", "book_id", "rating"]
    assert df["user_id"].dtype == np.int64 and df["book_id"].dtype == np.int64
    assert df["rating"].dtype == np.float32
    assert df["book_id"].tolist() == [16002136, 17277800, 16002136, 19358975]
    assert df["rating"].tolist() == [5.0, 4.0, 3.0, 1.0]
    assert df.attrs["duplicates_dropped"] == 0


def test_every_format_reads_the_same(tmp_path, notebook_csv):
    expected = read_interactions(notebook_csv, BOOKS)
    raw = pd.read_csv(notebook_csv)
    gz = tmp_path / "r.csv.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(notebook_csv.read_text())
    parquet = tmp_path / "r.parquet"
    raw.to_parquet(parquet)
    directory = tmp_path / "parts"
    directory.mkdir()
    raw.iloc[:2].to_parquet(directory / "part-0.parquet")
    raw.iloc[2:].to_parquet(directory / "part-1.parquet")
    for source in (gz, parquet, directory, raw, str(parquet)):
        got = read_interactions(source, BOOKS)
        pd.testing.assert_frame_equal(got, expected, check_dtype=True)


def test_string_ids_stay_strings_and_integral_floats_become_int(tmp_path):
    df = read_interactions(
        pd.DataFrame({"user_id": ["a", "b"], "item_id": [1.0, 2.0], "rating": [1, 2]})
    )
    assert df["user_id"].tolist() == ["a", "b"]
    assert df["item_id"].dtype == np.int64
    csv = write(tmp_path / "z.csv", "user_id,item_id,rating\n007,1,3\n8,2,3\n")
    df = read_interactions(csv)
    assert df["user_id"].tolist() == ["007", "8"]  # leading zeros make it a string id


def test_uint64_ids_beyond_int64_become_strings_not_wrapped(tmp_path):
    # 64-bit hashes stored as uint64: casting to int64 used to wrap them to negative ids
    big = np.array([2**63 + 5, 2**63 + 7, 3], dtype=np.uint64)
    table = pa.table({"user_id": big, "item_id": np.array([1, 2, 3], np.uint64), "rating": [1, 2, 3]})
    pq.write_table(table, tmp_path / "u.parquet")
    df = read_interactions(tmp_path / "u.parquet")
    assert df["user_id"].tolist() == [str(2**63 + 5), str(2**63 + 7), "3"]
    assert df["item_id"].dtype == np.int64 and df["item_id"].tolist() == [1, 2, 3]


def test_type_change_after_the_first_block_is_found(tmp_path):
    # pyarrow infers types from the first block (1 MB); a bad value further down still gets
    # a clear message with its row number.
    n = 120_000
    lines = [f"{k % 997},{k},4" for k in range(n)]
    lines[100_000] = "5,100000,abc"
    path = write(tmp_path / "big.csv", "user_id,item_id,rating\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"at data row 100001 in column 'rating' is 'abc'"):
        read_interactions(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ["empty"]),
        ("user_id,item_id,rating\n", ["header but no data rows"]),
        ("user_id,book,rating\n1,2,3\n", ["missing", "'item_id'", "'book'", "--item-col"]),
        ("user_id,item_id,rating\n1,2,3\n1,3,abc\n", ["data row 2", "'rating'", "'abc'", "not a number"]),
        ("user_id,item_id,rating\n1,2,3\n1,3,\n", ["data row 2", "'rating'", "empty"]),
        ("user_id,item_id,rating\n1,2,NaN\n", ["data row 1", "'rating'"]),
        ("user_id,item_id,rating\n1,2,3\n1,3,6\n", ["rating 6", "data row 2", "outside [1, 5]"]),
        ("user_id,item_id,rating\n1,2,3\n1,3,0.5\n", ["data row 2", "outside"]),
        ("user_id,item_id,rating\n1,2,3\n,3,4\n", ["'user_id'", "data row 2", "empty id"]),
        ("user_id,item_id,rating\n1,2,3\n2,,4\n", ["'item_id'", "data row 2"]),
    ],
)
def test_bad_files_name_file_row_and_column(tmp_path, text, expected):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as info:
        read_interactions(path, rating_range=(1, 5))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)


def test_row_numbers_are_one_based_data_rows(tmp_path):
    # the one convention (recmodels.errors.row_label): line 3 of the file is data row 2
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,3\n1,3,9\n")
    with pytest.raises(DataError, match=rf"rating 9 at {row_label(1)} in column 'rating'"):
        read_interactions(path, rating_range=(1, 5))
    assert row_label(1) == "data row 2"


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="nope.csv: interaction file not found"):
        read_interactions(tmp_path / "nope.csv")
    bad = write(tmp_path / "r.json", "{}")
    with pytest.raises(DataError, match=r"unsupported file type '\.json'"):
        read_interactions(bad)
    empty_dir = tmp_path / "d"
    empty_dir.mkdir()
    with pytest.raises(DataError, match=r"d: interaction directory holds no data files \(\.csv, .*\.parquet"):
        read_interactions(empty_dir)


def test_parquet_missing_column_lists_columns(tmp_path):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"u": [1], "item_id": [2], "rating": [3.0]}), path)
    with pytest.raises(DataError, match=r"missing interaction column\(s\) 'user_id'.*'u'"):
        read_interactions(path)


def test_rating_range_none_skips_the_check_and_bad_ranges_are_config_errors(notebook_csv):
    df = pd.DataFrame({"user_id": [1], "item_id": [1], "rating": [10.0]})
    assert read_interactions(df, rating_range=None)["rating"].tolist() == [10.0]
    assert read_interactions(df)["rating"].tolist() == [10.0]  # no range unless one is given
    with pytest.raises(DataError, match=r"DataFrame: rating 10 at data row 1 "):
        read_interactions(df, rating_range=(1, 5))
    with pytest.raises(ConfigError, match="MIN < MAX"):
        read_interactions(df, rating_range=(5, 1))
    with pytest.raises(ConfigError, match="duplicates must be one of"):
        read_interactions(df, duplicates="sum")


def test_duplicates_last_first_and_error(tmp_path):
    path = write(
        tmp_path / "d.csv", "user_id,item_id,rating\n1,1,1\n1,2,2\n2,1,3\n1,1,4\n1,2,5\n"
    )
    last = read_interactions(path, duplicates="last")
    assert last.attrs["duplicates_dropped"] == 2
    assert sorted(zip(last.user_id, last.item_id, last.rating, strict=True)) == [
        (1, 1, 4.0), (1, 2, 5.0), (2, 1, 3.0)
    ]
    first = read_interactions(path, duplicates="first")
    assert sorted(first.rating.tolist()) == [1.0, 2.0, 3.0]
    with pytest.raises(DataError) as info:
        read_interactions(path, duplicates="error")
    message = str(info.value)
    assert "duplicate (user, item) pair (1, 1) at data row 4" in message
    assert "first seen at data row 1" in message and "2 duplicate row(s)" in message
    # both spellings of the fix: the CLI flag and the Python argument (issue 11, item 7)
    assert "--duplicates last" in message and "duplicates='last'" in message
    assert "\n" not in message


def test_timestamps_numeric_or_text(tmp_path):
    cols = Columns(timestamp="ts")
    df = read_interactions(
        pd.DataFrame({"user_id": [1, 1], "item_id": [1, 2], "rating": [1, 2], "ts": [5, 3]}), cols
    )
    assert df["ts"].tolist() == [5, 3]
    path = write(
        tmp_path / "t.csv", "user_id,item_id,rating,ts\n1,1,1,2020-01-02\n1,2,2,2020-01-01\n"
    )
    df = read_interactions(path, cols)
    assert df["ts"].iloc[0] > df["ts"].iloc[1]
    path = write(tmp_path / "t2.csv", "user_id,item_id,rating,ts\n1,1,1,2020-01-02\n1,2,2,soon\n")
    with pytest.raises(DataError, match=r"timestamp 'soon' at data row 2 .*'ts'"):
        read_interactions(path, cols)


# --------------------------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------------------------
def frame(n, seed=0, users=50):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, users, n),
            "item_id": np.arange(n),
            "rating": rng.integers(1, 6, n).astype(np.float32),
            "ts": rng.permutation(n),
        }
    )


def test_random_split_fractions_and_reproducibility():
    df = frame(1000)
    split = split_interactions(df, seed=3)
    assert split.sizes() == {"train": 700, "valid": 200, "test": 100}
    parts = [set(p["item_id"]) for p in (split.train, split.valid, split.test)]
    assert set.union(*parts) == set(df["item_id"]) and sum(map(len, parts)) == len(df)
    again = split_interactions(df, seed=3)
    pd.testing.assert_frame_equal(again.test, split.test)
    other = split_interactions(df, seed=4)
    assert set(other.test["item_id"]) != parts[2]
    assert split.to_dict()["fractions"] == [0.7, 0.2, 0.1]
    assert split_interactions(frame(10)).sizes() == {"train": 7, "valid": 2, "test": 1}
    assert split_interactions(df, fractions=(0.5, 0.25, 0.25)).sizes()["valid"] == 250


def test_random_split_too_few_rows_and_bad_fractions():
    with pytest.raises(DataError, match="3 interaction.*at least 4 rows are needed"):
        split_interactions(frame(3))
    with pytest.raises(ConfigError, match="sum to 1"):
        split_interactions(frame(10), fractions=(0.5, 0.2, 0.1))
    with pytest.raises(ConfigError, match="three positive numbers"):
        split_interactions(frame(10), fractions=(1.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match="split method"):
        split_interactions(frame(10), method="kfold")


def test_leave_last_out():
    cols = Columns(timestamp="ts")
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 3, 3, 3],
            "item_id": [10, 11, 12, 13, 10, 11, 10, 11, 12],
            "rating": np.ones(9, dtype=np.float32),
            "ts": [40, 10, 30, 20, 1, 2, 5, 5, 5],  # user 3: ties -> row order
        }
    )
    split = split_interactions(df, method="leave-last-out", columns=cols)
    assert sorted(zip(split.test.user_id, split.test.item_id, strict=True)) == [(1, 10), (3, 12)]
    assert sorted(zip(split.valid.user_id, split.valid.item_id, strict=True)) == [(1, 12), (3, 11)]
    assert sorted(split.train.item_id[split.train.user_id == 2]) == [10, 11]
    assert split.fractions is None and split.method == "leave-last-out"
    with pytest.raises(ConfigError, match="needs a timestamp column"):
        split_interactions(df, method="leave-last-out")
    with pytest.raises(DataError, match="at least one user with 3 or more"):
        split_interactions(df[df.user_id == 2], method="leave-last-out", columns=cols)


def test_leave_last_out_with_tz_aware_timestamps_orders_by_instant(recwarn):
    cols = Columns(timestamp="ts")
    ts = pd.to_datetime(["2024-01-01 12:00+02:00", "2024-01-01 11:30+00:00", "2024-01-01 11:00+00:00"],
                        utc=True)
    df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [10, 11, 12], "rating": [1.0, 2.0, 3.0],
                       "ts": ts.tz_convert("Europe/Paris")})
    split = split_interactions(df, method="leave-last-out", columns=cols)
    # 12:00+02:00 is 10:00 UTC, the earliest: train; 11:30 UTC is the latest: test
    assert split.test.item_id.tolist() == [11] and split.train.item_id.tolist() == [10]
    assert not [w for w in recwarn if "timezone" in str(w.message)]


def test_leave_last_out_matches_a_groupby_reference():
    cols = Columns(timestamp="ts")
    df = frame(2000, seed=1, users=300)
    split = split_interactions(df, method="leave-last-out", columns=cols)
    ordered = df.sort_values(["user_id", "ts"])
    sizes = ordered.groupby("user_id")["item_id"].transform("size")
    eligible = ordered[sizes >= 3]
    last = eligible.groupby("user_id").tail(1)
    second = eligible.groupby("user_id").nth(-2)
    assert set(split.test.item_id) == set(last.item_id)
    assert set(split.valid.item_id) == set(second.item_id)
    assert len(split.train) + len(split.valid) + len(split.test) == len(df)


# --------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["int", "str"])
def test_fit_encoders_agree_with_label_encoder(kind):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(0)
    users = rng.integers(0, 10_000_000, 500)
    items = rng.integers(0, 300, 500)
    if kind == "str":
        users = np.array([f"u{v}" for v in users], dtype=object)
    df = pd.DataFrame({"user_id": users, "item_id": items, "rating": np.ones(500, np.float32)})
    user_enc, item_enc = fit_encoders(df)
    for enc, col in ((user_enc, "user_id"), (item_enc, "item_id")):
        expected = preprocessing.LabelEncoder().fit_transform(df[col])
        np.testing.assert_array_equal(enc.transform(df[col]), expected)


def test_encode_drops_unknown_rows_and_reports():
    train = pd.DataFrame({"user_id": [1, 2], "item_id": [10, 20], "rating": [1.0, 2.0]})
    users, items = fit_encoders(train)
    other = pd.DataFrame(
        {"user_id": [1, 3, 2, 3], "item_id": [20, 10, 30, 30], "rating": [5.0, 4.0, 3.0, 2.0]}
    )
    encoded, report = encode(other, users, items)
    assert report == {"rows": 4, "kept": 1, "unknown_users": 2, "unknown_items": 2}
    assert encoded.user_index.tolist() == [0] and encoded.item_index.tolist() == [1]
    assert encoded.rating.dtype == np.float32 and len(encoded) == 1


def test_save_and_load_encoded(tmp_path):
    enc = EncodedRatings(np.array([0, 1]), np.array([2, 3]), np.array([4.5, 1.0]))
    path = save_encoded(enc, tmp_path / "split" / "train.parquet")
    back = load_encoded(path)
    assert back.user_index.dtype == np.int64 and back.rating.dtype == np.float32
    np.testing.assert_array_equal(back.item_index, [2, 3])
    np.testing.assert_array_equal(back.rating, [4.5, 1.0])
    assert [p.name for p in path.parent.iterdir()] == ["train.parquet"]  # no temp files left
    pq.write_table(pa.table({"user_index": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet: encoded ratings lack column\(s\)"):
        load_encoded(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="not found"):
        load_encoded(tmp_path / "none.parquet")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-(2**40), 2**40), st.text(min_size=1, max_size=4)),
        min_size=1,
        max_size=40,
    )
)
def test_encode_round_trip(pairs):
    df = pd.DataFrame(
        {
            "user_id": [u for u, _ in pairs],
            "item_id": pd.Series([i for _, i in pairs], dtype=object),
            "rating": np.full(len(pairs), 3.0, np.float32),
        }
    )
    users, items = fit_encoders(df)
    encoded, report = encode(df, users, items)
    assert report["kept"] == len(df)
    assert users.inverse_transform(encoded.user_index).tolist() == df["user_id"].tolist()
    # text ids round-trip as the id rules read them: exactly as written, unless every one is a
    # canonical integer spelling ("0", "-12", "7.0"), when the column holds integer ids
    kind, _, _ = fit_kind(df["item_id"])
    assert items.kind_ == kind
    expected = df["item_id"].tolist()
    if kind == "int64":
        expected = [int(float(text)) for text in expected]
    assert items.inverse_transform(encoded.item_index).tolist() == expected


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
def test_describe_matches_the_notebook_statistics():
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 3],
            "item_id": [10, 11, 12, 10, 11, 10],
            "rating": np.array([5, 4, 4, 3, 1, 5], dtype=np.float32),
        }
    )
    stats = describe(df)
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 3, 6)
    assert stats["density"] == pytest.approx(6 / 9)
    assert stats["rating_histogram"] == {1: 1, 3: 1, 4: 2, 5: 2}
    assert stats["rating_mean"] == pytest.approx(22 / 6)
    assert (stats["rating_min"], stats["rating_max"]) == (1, 5)
    assert stats["per_user"]["max"] == 3 and stats["per_user"]["median"] == 2
    assert stats["per_item"]["with_one"] == 1
    json.dumps(stats)  # JSON-able (it goes into metrics.json)
    text = format_stats(stats)
    assert "Users:         3" in text and "Interactions:  6" in text
    assert "Density:       66.7 % of the 9 (user, item) pairs" in text
    assert "Per user:" in text and "Per item:" in text


def test_describe_bins_continuous_ratings():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"user_id": np.arange(500), "item_id": np.arange(500), "rating": rng.uniform(1, 5, 500)}
    )
    hist = describe(df)["rating_histogram"]
    assert len(hist) == 10 and sum(hist.values()) == 500


# -- "not rated" values (issue 21 #13), the rating step (#9), dates -------------------------------
GOODREADS_HEAD = (Path(__file__).resolve().parents[2] / "shared" / "data" / "goodreads-head"
                  / "goodreads_interactions_head.csv")


def _shelved(tmp_path):
    """Goodreads-like: 0 means shelved, not rated; two thirds of the rows."""
    rows = ["user_id,book_id,rating"]
    rows += [f"{u},{b},0" for u in range(10) for b in range(20)]
    rows += [f"{u},{100 + b},{1 + (u + b) % 5}" for u in range(10) for b in range(10)]
    rows += ["3,100,0"]  # a pair rated and also marked "not rated": the 0 row goes, not the rating
    return write(tmp_path / "shelves.csv", "\n".join(rows) + "\n")


def test_missing_rating_rows_are_dropped_and_counted(tmp_path):
    path = _shelved(tmp_path)
    df = read_interactions(path, BOOKS, missing_rating=0, rating_range=(1, 5))
    assert len(df) == 100 and df["rating"].min() == 1
    assert df.attrs["missing_rating"] == 0 and df.attrs["missing_rating_dropped"] == 201
    stats = describe(df, BOOKS)
    assert stats["missing_rating"] == 0 and stats["missing_rating_dropped"] == 201
    assert "Not rated:     201 rows with rating 0 dropped (--missing-rating)" in format_stats(stats)
    # without it, the zeros are ratings (and outside a 1..5 range)
    assert len(read_interactions(path, BOOKS, duplicates="first")) == 300
    assert "rating 0 at data row 1" in str(pytest.raises(DataError, read_interactions, path, BOOKS,
                                                          rating_range=(1, 5)).value)


def test_missing_rating_keeps_row_numbers_and_checks_its_value(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,1,0\n1,2,4\n1,3,0\n1,2,5\n")
    with pytest.raises(DataError, match=f"at {row_label(3)}, first seen at {row_label(1)}"):
        read_interactions(path, missing_rating=0, duplicates="error")
    with pytest.raises(DataError, match=r"every rating is 0, the 'not rated' value"):
        read_interactions(write(tmp_path / "z.csv", "user_id,item_id,rating\n1,1,0\n"), missing_rating=0)
    for bad in ("zero", float("nan"), True):
        with pytest.raises(ConfigError, match="must be a finite number"):
            read_interactions(path, missing_rating=bad)
    assert "missing_rating" not in describe(read_interactions(path, duplicates="last"))


def test_a_not_rated_value_is_warned_about(tmp_path):
    from recmodels.data import rating_warnings

    stats = describe(read_interactions(_shelved(tmp_path), BOOKS, duplicates="last"), BOOKS)
    (warning,) = rating_warnings(stats)
    assert warning.startswith("rating 0 holds 67.0 % of the rows, apart from the 1..5 scale")
    assert "--missing-rating 0" in warning
    hist = lambda counts: {"rating_histogram": dict(counts)}  # noqa: E731
    # a sentinel far from the scale, at either end
    assert rating_warnings(hist({1: 100, 2: 100, 3: 100, 4: 100, 99: 500}))
    assert rating_warnings(hist({-1: 40, 1: 30, 2: 30, 3: 30}))
    # ordinary skewed scales are not: a top-heavy 1..5 (Amazon-like), half stars, a 0..5 scale
    assert not rating_warnings(hist({1: 10, 2: 5, 3: 8, 4: 17, 5: 60}))
    assert not rating_warnings(hist({0.5: 10, 1.0: 30, 1.5: 20, 2.0: 70, 2.5: 50, 3.0: 200, 3.5: 130,
                                     4.0: 270}))
    assert not rating_warnings(hist({0: 25, 1: 10, 2: 15, 3: 20, 4: 20, 5: 10}))
    # ... unless it is not the most common value, or there are too few rows to tell
    assert not rating_warnings(hist({-1: 40, 1: 30, 2: 50, 3: 30}))
    assert not rating_warnings(hist({1: 1, 3: 1, 4: 1, 5: 1}))
    # a gap in the rest of the scale, too few values, binned histograms: nothing to say
    assert not rating_warnings(hist({0: 50, 1: 1, 2: 20, 4: 10, 5: 19}))
    assert not rating_warnings(hist({0: 50, 1: 1, 2: 49}))
    assert not rating_warnings(hist({"[0, 1)": 50, "[1, 2)": 1, "[2, 3)": 2, "[3, 4]": 3}))


@pytest.mark.skipif(not GOODREADS_HEAD.is_file(), reason="needs ../shared/data/goodreads-head")
def test_goodreads_not_rated_zeros():
    stats = describe(read_interactions(GOODREADS_HEAD, BOOKS), BOOKS)
    from recmodels.data import rating_warnings

    (warning,) = rating_warnings(stats)
    assert "rating 0 holds 51.5 % of the rows" in warning
    df = read_interactions(GOODREADS_HEAD, BOOKS, missing_rating=0)
    assert len(df) == 97_037 and df.attrs["missing_rating_dropped"] == 102_963
    assert rating_warnings(describe(df, BOOKS)) == []


def test_describe_reads_the_rating_step_and_shows_epoch_dates():
    df = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 1], "rating": [0.5, 3.5, 4.0],
                       "ts": [964_982_703, 964_982_224, 1_537_799_250]})
    cols = Columns(timestamp="ts")
    stats = describe(df, cols)
    assert stats["rating_step"] == 0.5 and stats["timestamp_min"] == 964_982_224
    text = format_stats(stats)
    assert "min 0.5, max 4, step 0.5" in text
    assert "Timestamps:    2000-07-30T18:37:04Z .. 2018-09-24T14:27:30Z (epoch seconds" in text
    stats = describe(df.assign(ts=df["ts"] * 1000), cols)
    assert "2000-07-30T18:37:04Z" in format_stats(stats) and "epoch milliseconds" in format_stats(stats)
    assert describe(df.assign(rating=[0.1234, 1.0, 2.0]))["rating_step"] is None
