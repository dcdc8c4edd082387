"""Pretrained item tables: reading, validation messages, alignment to the item encoder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recmodels.embeddings import AlignedEmbeddings, align_item_embeddings, read_item_embeddings
from recmodels.encoders import IdEncoder
from recmodels.errors import ConfigError, DataError


def write(path, text):
    path.write_text(text)
    return path


def test_read_notebook_style_table(tmp_path):
    # the notebook's table: book_id plus numbered columns
    path = write(tmp_path / "emb.csv", "book_id,0,1,2\n16002136,0.1,0.2,0.3\n17277800,1,2,3\n")
    ids, vectors = read_item_embeddings(path, id_col="book_id")
    assert ids.dtype == np.int64 and ids.tolist() == [16002136, 17277800]
    assert vectors.dtype == np.float32 and vectors.shape == (2, 3)
    np.testing.assert_allclose(vectors[1], [1, 2, 3])


def test_parquet_and_dataframe_sources(tmp_path):
    df = pd.DataFrame({"item_id": ["a", "b"], "x": [1.0, 2.0], "y": [3.0, 4.0]})
    df.to_parquet(tmp_path / "e.parquet")
    for source in (tmp_path / "e.parquet", df):
        ids, vectors = read_item_embeddings(source)
        assert ids.tolist() == ["a", "b"] and vectors.shape == (2, 2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ["empty"]),
        ("item_id,e0\n", ["no rows"]),
        ("book_id,e0\n1,0.5\n", ["no id column 'item_id'", "'book_id'", "'e0'"]),
        ("item_id\n1\n", ["only the id column"]),
        ("item_id,e0,e1\n1,0.5,0.1\n2,0.5,abc\n", ["'abc'", "data row 2", "'e1'", "non-numeric"]),
        ("item_id,e0,e1\n1,0.5,0.1\n2,,0.2\n", ["data row 2", "'e0'", "empty"]),
        ("item_id,e0,e1\n1,0.5,NaN\n", ["data row 1", "'e1'"]),
        ("item_id,e0,e1\n1,0.5,0.1\n2,inf,0.1\n", ["data row 2", "'e0'", "inf"]),
        ("item_id,e0\n1,1e39\n", ["data row 1", "float32"]),
        ("item_id,e0\n5,0.1\n6,0.2\n5,0.3\n", ["duplicate item id 5", "data row 3", "first at data row 1"]),
        ("item_id,e0\n5,0.1\n,0.2\n", ["empty id", "'item_id'", "data row 2"]),
    ],
)
def test_bad_tables_name_file_row_and_column(tmp_path, text, expected):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as info:
        read_item_embeddings(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for part in expected:
        assert part in message, (part, message)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="none.csv: item embedding file not found"):
        read_item_embeddings(tmp_path / "none.csv")


def test_align_counts_and_fill_modes():
    encoder = IdEncoder("item").fit([100, 200, 300, 400])
    ids = np.array([300, 999, 100, 888])
    vectors = np.array([[3.0, 3.0], [9.0, 9.0], [1.0, 1.0], [8.0, 8.0]], dtype=np.float32)
    zeros = align_item_embeddings(ids, vectors, encoder)
    assert isinstance(zeros, AlignedEmbeddings)
    assert (zeros.n_matched, zeros.n_missing, zeros.n_ignored) == (2, 2, 2)
    assert zeros.matrix.dtype == np.float32 and zeros.matrix.shape == (4, 2)
    np.testing.assert_array_equal(zeros.matrix, [[1, 1], [0, 0], [3, 3], [0, 0]])
    mean = align_item_embeddings(ids, vectors, encoder, fill="mean")
    np.testing.assert_array_equal(mean.matrix, [[1, 1], [2, 2], [3, 3], [2, 2]])
    assert "2/4 items matched" in mean.summary() and mean.to_dict()["dim"] == 2
    with pytest.raises(ConfigError, match="fill"):
        align_item_embeddings(ids, vectors, encoder, fill="random")


def test_align_checks_width_and_matches():
    encoder = IdEncoder("item").fit([1, 2])
    with pytest.raises(DataError, match="has 3 vector column.*model expects 4"):
        align_item_embeddings([1], np.ones((1, 3)), encoder, expected_dim=4)
    with pytest.raises(DataError, match="none of the 2 item embedding ids"):
        align_item_embeddings([7, 8], np.ones((2, 3)), encoder)
    with pytest.raises(DataError, match="duplicate"):
        align_item_embeddings([1, 1], np.ones((2, 3)), encoder)
    with pytest.raises(DataError, match="2 item embedding ids but 1 vectors"):
        align_item_embeddings([1, 2], np.ones((1, 3)), encoder)


def test_align_bridges_int_and_text_ids():
    int_encoder = IdEncoder("item").fit([10, 20])
    aligned = align_item_embeddings(np.array(["20", "10"], dtype=object), np.eye(2), int_encoder)
    np.testing.assert_array_equal(aligned.matrix, [[0, 1], [1, 0]])
    with pytest.raises(DataError, match="strings .* integers"):
        align_item_embeddings(np.array(["a"], dtype=object), np.eye(1), int_encoder)
    str_encoder = IdEncoder("item").fit(["10", "20"])
    aligned = align_item_embeddings(np.array([10, 20]), np.eye(2), str_encoder)
    assert aligned.n_matched == 2
