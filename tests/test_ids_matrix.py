"""The id rules on a matrix of input kind x id spelling (issue 11, item 1).

For every input kind and every spelling of the same ids, training (``read_interactions`` +
``fit_encoders``) gives the id kind that recmodels/ids.py's rules say, and the same input read the
way the scorer reads it (``tables.open_table(..., text_columns=ids).batches``) maps every row to
the index training gave it: a file you trained on can always be scored.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recmodels.data import Columns, encode, fit_encoders, read_interactions
from recmodels.datasets import make_ratings
from recmodels.encoders import UNKNOWN
from recmodels.errors import DataError, row_label
from recmodels.tables import open_table

USERS = [204, 19818, 7, 204, 19818, 7]
ITEMS = [204, 3, 1000000, 3, 1000000, 204]
SPELLINGS = {  # how one id, 204, is written
    "204": str,
    "204.0": lambda v: f"{v}.0",
    "0204": lambda v: f"0{v}",
    "+204": lambda v: f"+{v}",
}
# The rules, written out for this test: text is an integer id only in a canonical spelling
# (no leading zero, no sign but "-", optionally ".0"); typed numbers are integer ids when integral.
TEXT_INT_SPELLINGS = {"204", "204.0"}


def _text(values, spelling):
    return [SPELLINGS[spelling](v) for v in values]


def _number(values, spelling):
    return [float(s) for s in _text(values, spelling)]  # "0204" -> 204.0: the spelling is text-only


def _ratings(n):
    return [float(1 + k % 5) for k in range(n)]


def _csv(tmp_path, users, items):
    path = tmp_path / "ratings.csv"
    lines = [f"{u},{i},{r}" for u, i, r in zip(users, items, _ratings(len(users)), strict=True)]
    path.write_text("user_id,item_id,rating\n" + "\n".join(lines) + "\n")
    return path


def _parquet(tmp_path, users, items):
    path = tmp_path / "ratings.parquet"
    pq.write_table(pa.table({"user_id": users, "item_id": items, "rating": _ratings(len(users))}), path)
    return path


def _frame(users, items):
    return pd.DataFrame({"user_id": users, "item_id": items, "rating": _ratings(len(users))})


# input kind -> (is the spelling kept as text?, build(tmp_path, spelling) -> path or DataFrame)
KINDS = {
    "csv file": (True, lambda tmp, s: _csv(tmp, _text(USERS, s), _text(ITEMS, s))),
    "parquet int64": (False, lambda tmp, s: _parquet(
        tmp, pa.array(_number(USERS, s)).cast(pa.int64()), pa.array(_number(ITEMS, s)).cast(pa.int64()))),
    "parquet int32": (False, lambda tmp, s: _parquet(
        tmp, pa.array(_number(USERS, s)).cast(pa.int32()), pa.array(_number(ITEMS, s)).cast(pa.int32()))),
    "parquet float": (False, lambda tmp, s: _parquet(
        tmp, pa.array(_number(USERS, s)), pa.array(_number(ITEMS, s)))),
    "parquet text": (True, lambda tmp, s: _parquet(
        tmp, pa.array(_text(USERS, s), pa.string()), pa.array(_text(ITEMS, s), pa.string()))),
    "parquet dictionary": (True, lambda tmp, s: _parquet(
        tmp, pa.array(_text(USERS, s)).dictionary_encode(), pa.array(_text(ITEMS, s)).dictionary_encode())),
    "dataframe int": (False, lambda tmp, s: _frame(
        np.array(_number(USERS, s), np.int64), np.array(_number(ITEMS, s), np.int64))),
    "dataframe float": (False, lambda tmp, s: _frame(_number(USERS, s), _number(ITEMS, s))),
    "dataframe object": (True, lambda tmp, s: _frame(
        pd.Series(_text(USERS, s), dtype=object), pd.Series(_text(ITEMS, s), dtype=object))),
    "dataframe str": (True, lambda tmp, s: _frame(
        pd.Series(_text(USERS, s), dtype=str), pd.Series(_text(ITEMS, s), dtype=str))),
    "dataframe string": (True, lambda tmp, s: _frame(
        pd.Series(_text(USERS, s), dtype="string"), pd.Series(_text(ITEMS, s), dtype="string"))),
    "dataframe categorical": (True, lambda tmp, s: _frame(
        pd.Categorical(_text(USERS, s)), pd.Categorical(_text(ITEMS, s)))),
    "dataframe nullable Int64": (False, lambda tmp, s: _frame(
        pd.array(_number(USERS, s), dtype="Int64"), pd.array(_number(ITEMS, s), dtype="Int64"))),
}


def scorer_columns(source, batch_size=4):
    """The id columns as the scorer reads them: Arrow batches (files) or the frame's columns."""
    if isinstance(source, pd.DataFrame):
        table = pa.Table.from_pandas(source, preserve_index=False)
        yield table.column("user_id"), table.column("item_id")
        yield source["user_id"], source["item_id"]
        return
    opened = open_table(source, text_columns=("user_id", "item_id"))
    for _, batch in opened.batches(["user_id", "item_id"], batch_size):
        yield batch.column("user_id"), batch.column("item_id")


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_trained_ids_follow_the_rules_and_the_same_input_always_maps(tmp_path, kind, spelling):
    as_text, build = KINDS[kind]
    source = build(tmp_path, spelling)
    df = read_interactions(source)
    users, items = fit_encoders(df)

    expected_kind = "int64" if not as_text or spelling in TEXT_INT_SPELLINGS else "string"
    assert (users.kind_, items.kind_) == (expected_kind, expected_kind)
    if expected_kind == "int64":
        assert df["user_id"].dtype == np.int64 and df["user_id"].tolist() == USERS
        assert df["item_id"].tolist() == ITEMS
    else:
        assert df["user_id"].tolist() == _text(USERS, spelling)  # kept exactly as written
        assert df["item_id"].tolist() == _text(ITEMS, spelling)
        assert all(isinstance(v, str) for v in df["item_id"])
    assert len(users) == 3 and len(items) == 3

    trained, _ = encode(df, users, items)
    reads = list(scorer_columns(source))
    if isinstance(source, pd.DataFrame):
        for user_col, item_col in reads:
            np.testing.assert_array_equal(users.transform(user_col), trained.user_index)
            np.testing.assert_array_equal(items.transform(item_col), trained.item_index)
    else:
        if str(source).endswith(".parquet"):
            assert len(reads) == 2  # batches of 4 rows: the mapping does not depend on the batch
        got_users = np.concatenate([users.transform(u) for u, _ in reads])
        got_items = np.concatenate([items.transform(i) for _, i in reads])
        np.testing.assert_array_equal(got_users, trained.user_index)
        np.testing.assert_array_equal(got_items, trained.item_index)
    assert (trained.user_index != UNKNOWN).all() and (trained.item_index != UNKNOWN).all()


def test_issue_reproduction_float_ids_in_csv_train_as_integers_and_integer_pairs_score(tmp_path):
    ratings = make_ratings(n_users=300, n_items=200, n_ratings=3000, seed=0).ratings
    floats = ratings.astype({"user_id": np.float64, "item_id": np.float64})
    floats.to_csv(tmp_path / "floatids.csv", index=False)
    first_row = (tmp_path / "floatids.csv").read_text().splitlines()[1]
    assert re.match(r"\d+\.0,\d+\.0,", first_row), first_row  # ids written as floats: 204.0
    df = read_interactions(tmp_path / "floatids.csv")
    users, items = fit_encoders(df)
    assert (users.kind_, items.kind_) == ("int64", "int64")

    pairs = ratings[["user_id", "item_id"]]
    pairs.to_csv(tmp_path / "intpairs.csv", index=False)
    pairs.to_parquet(tmp_path / "intpairs.parquet", index=False)
    for name in ("intpairs.csv", "intpairs.parquet"):
        source = open_table(tmp_path / name, text_columns=("user_id", "item_id"))
        mapped_users, mapped_items = [], []
        for _, batch in source.batches(["user_id", "item_id"], 1024):
            mapped_users.append(users.transform(batch.column("user_id")))
            mapped_items.append(items.transform(batch.column("item_id")))
        user_index, item_index = np.concatenate(mapped_users), np.concatenate(mapped_items)
        assert len(user_index) == len(pairs)
        assert (user_index != UNKNOWN).all() and (item_index != UNKNOWN).all(), name
        np.testing.assert_array_equal(users.inverse_transform(user_index), pairs["user_id"].to_numpy())
        np.testing.assert_array_equal(items.inverse_transform(item_index), pairs["item_id"].to_numpy())


def test_ids_that_really_differ_stay_apart(tmp_path):
    # Trained on integer ids, "0000204" is not user 204; trained on "0204", integer 204 is unknown.
    int_df = read_interactions(_frame(USERS, ITEMS))
    users, _ = fit_encoders(int_df)
    path = _csv(tmp_path, ["0000204", "204", "+204", " 204"] + ["7", "7"], _text(ITEMS, "204"))
    opened = open_table(path, text_columns=("user_id", "item_id"))
    (_, batch), = opened.batches(["user_id"], 100)
    index = users.transform(batch.column("user_id"))
    assert index.tolist()[:4] == [UNKNOWN, users.transform([204])[0], UNKNOWN, UNKNOWN]
    text_df = read_interactions(path)
    text_users, _ = fit_encoders(text_df)
    assert text_users.kind_ == "string"
    assert text_users.transform(pa.array([204, 7]))[0] == text_users.transform(["204"])[0] != UNKNOWN
    assert text_users.transform(pa.array([2040]))[0] == UNKNOWN


NULL_INPUTS = {
    "csv empty cell": lambda tmp: _csv(tmp, ["1", "2", ""], ["5", "6", "7"]),
    "parquet null": lambda tmp: _parquet(tmp, pa.array([1, 2, None]), pa.array([5, 6, 7])),
    "parquet null text": lambda tmp: _parquet(tmp, pa.array(["a", "b", None]), pa.array([5, 6, 7])),
    "dataframe NaN": lambda tmp: _frame([1.0, 2.0, np.nan], [5, 6, 7]),
    "dataframe None": lambda tmp: _frame(pd.Series(["a", "b", None], dtype=object), [5, 6, 7]),
    "dataframe Int64 NA": lambda tmp: _frame(pd.array([1, 2, None], dtype="Int64"), [5, 6, 7]),
    "dataframe categorical NaN": lambda tmp: _frame(pd.Categorical(["a", "b", None]), [5, 6, 7]),
}


@pytest.mark.parametrize("kind", list(NULL_INPUTS))
def test_null_ids_are_one_line_errors_naming_column_and_first_row(tmp_path, kind):
    with pytest.raises(DataError) as info:
        read_interactions(NULL_INPUTS[kind](tmp_path), Columns())
    message = str(info.value)
    assert "\n" not in message
    assert f"1 empty id(s) in column 'user_id', first at {row_label(2)}; drop or fill those rows" in message
