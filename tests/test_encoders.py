import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recmodels.encoders import UNKNOWN, IdEncoder
from recmodels.errors import DataError, NotFittedError


def test_matches_sklearn_label_encoder_for_ints_and_strings():
    from sklearn.preprocessing import LabelEncoder

    rng = np.random.default_rng(0)
    ints = rng.integers(0, 10**9, 5000)
    strs = np.array([f"u{v}" for v in rng.integers(0, 700, 3000)], dtype=object)
    for values in (ints, strs):
        ours = IdEncoder().fit(values)
        theirs = LabelEncoder().fit(values)
        assert list(ours.classes_) == list(theirs.classes_)
        np.testing.assert_array_equal(ours.transform(values), theirs.transform(values))


@pytest.mark.parametrize("span", ["dense", "sparse"])
def test_int_transform_unknown_and_nulls(span):
    classes = np.array([5, 7, 11]) if span == "dense" else np.array([5, 7, 10**15])
    enc = IdEncoder("user").fit(classes)
    assert (enc._lut is not None) == (span == "dense")
    got = enc.transform(pd.Series([7, None, 4, classes[-1], -3, 10**16], dtype="Int64"))
    assert got.tolist() == [1, UNKNOWN, UNKNOWN, 2, UNKNOWN, UNKNOWN]


def test_nullable_int_ids_beyond_2_53_keep_their_value():
    # an Int64 column with a null used to go through float64 and lose the low bits
    classes = np.array([2**62 + 1, 2**62 + 2, 2**62 + 3])
    enc = IdEncoder("user").fit(classes)
    got = enc.transform(pd.Series([2**62 + 3, None, 2**62 + 1, 2**62 + 4], dtype="Int64"))
    assert got.tolist() == [2, UNKNOWN, 0, UNKNOWN]


def test_accepts_arrow_arrays_with_nulls():
    enc = IdEncoder("item").fit(["a", "b"])
    got = enc.transform(pa.chunked_array([["b", None], ["zz", "a"]]))
    assert got.tolist() == [1, UNKNOWN, UNKNOWN, 0]


def test_error_policy_names_the_id_and_row():
    enc = IdEncoder("item").fit([1, 2, 3])
    with pytest.raises(DataError, match=r"unknown item id 42 at data row 2 \(2 unknown"):
        enc.transform([3, 42, 43], unknown="error")


def test_strings_for_int_ids_is_a_clear_error():
    # the id rules (recmodels.ids): canonical integer text is the integer, anything else unknown
    enc = IdEncoder("user").fit([1, 2])
    got = enc.transform(np.array(["1", "2", "2.0", "0002", "+2", "x"], dtype=object))
    assert got.tolist() == [0, 1, 1, UNKNOWN, UNKNOWN, UNKNOWN]
    with pytest.raises(DataError, match=r"unknown user id '0002' at data row 1 \(1 unknown"):
        enc.transform(["0002"], unknown="error")


def test_integral_floats_are_accepted_for_int_ids():
    enc = IdEncoder("user").fit([1, 2])
    assert enc.transform(np.array([2.0, np.nan, 1.0])).tolist() == [1, UNKNOWN, 0]
    assert enc.transform(np.array([1.5])).tolist() == [UNKNOWN]  # never an integer id


def test_fit_rejects_null_ids():
    with pytest.raises(DataError, match="null user id"):
        IdEncoder("user").fit(pd.Series(["a", None]))


def test_not_fitted():
    with pytest.raises(NotFittedError):
        IdEncoder().transform([1])


@pytest.mark.parametrize("values", [[10**12, 3, 77], ["b", "é", "a"]])
def test_parquet_round_trip_keeps_dtype(tmp_path, values):
    enc = IdEncoder("user").fit(values)
    path = enc.save(tmp_path / "ids.parquet")
    back = IdEncoder.load(path, name="user")
    assert back.kind_ == enc.kind_
    assert list(back.classes_) == list(enc.classes_)
    assert not list(tmp_path.glob("*.tmp"))


def test_load_rejects_unsorted_or_bad_files(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [3, 1]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="not sorted and unique"):
        IdEncoder.load(tmp_path / "bad.parquet")
    (tmp_path / "trunc.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(DataError, match="cannot read id map"):
        IdEncoder.load(tmp_path / "trunc.parquet")
    with pytest.raises(DataError, match="not found"):
        IdEncoder.load(tmp_path / "missing.parquet")


@given(st.lists(st.one_of(st.integers(-(2**62), 2**62)), min_size=1, max_size=60))
def test_round_trip_property_ints(ids):
    enc = IdEncoder().fit(ids)
    idx = enc.transform(ids)
    assert (idx >= 0).all()
    assert enc.inverse_transform(idx).tolist() == ids


@given(st.lists(st.text(max_size=5), min_size=1, max_size=60))
def test_round_trip_property_strings(ids):
    enc = IdEncoder().fit(ids)
    back = enc.inverse_transform(enc.transform(ids)).tolist()
    if enc.kind_ == "string":
        assert back == ids
    else:  # every id is a canonical integer spelling (recmodels.ids rule 3)
        assert back == [int(text.split(".")[0]) for text in ids]
