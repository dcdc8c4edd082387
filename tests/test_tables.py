"""recmodels.tables: one suffix list, one way to expand an input, one set of read errors."""

from __future__ import annotations

import bz2
import gzip

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recmodels import tables
from recmodels.data import read_interactions
from recmodels.errors import DataError, row_label
from recmodels.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, expand_input, open_table, read_table

FRAME = pd.DataFrame({"user_id": [3, 1, 2, 1], "item_id": [10, 20, 10, 30], "rating": [1.0, 2.0, 3.0, 4.0]})


def write_as(path, frame=FRAME):
    """Write ``frame`` in the format its suffix names."""
    name = str(path).lower()
    if name.endswith(PARQUET_SUFFIXES):
        frame.to_parquet(path, index=False)
        return path
    text = frame.to_csv(index=False, sep="\t" if ".tsv" in name else ",")
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    elif name.endswith(".bz2"):
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def streamed(source, columns, batch_size=1000, start_row=0) -> pd.DataFrame:
    pieces = list(source.batches(columns, batch_size, start_row))
    return pa.Table.from_batches([b for _, b in pieces]).to_pandas()


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("suffix", CSV_SUFFIXES + PARQUET_SUFFIXES + (".CSV", ".Parquet"))
def test_one_suffix_list_for_training_and_scoring(tmp_path, suffix):
    path = write_as(tmp_path / f"ratings{suffix}")
    kind = "csv" if suffix.lower() in CSV_SUFFIXES else "parquet"
    assert expand_input(path) == (kind, [str(path)])
    df = read_interactions(path)  # training
    assert df["user_id"].tolist() == [3, 1, 2, 1] and df["rating"].tolist() == [1, 2, 3, 4]
    source = open_table(path, text_columns=("user_id", "item_id"))  # scoring
    assert source.kind == kind and source.total_rows == (4 if kind == "parquet" else None)
    got = streamed(source, ["item_id", "rating"])
    assert got["item_id"].astype(int).tolist() == [10, 20, 10, 30]
    assert got["rating"].tolist() == [1, 2, 3, 4]


def test_text_columns_are_read_as_text_in_csv_only(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("user_id,item_id,rating\n0204,204.0,3\n+204,204,4\n")
    table, where = read_table(csv, ["user_id", "item_id"], text_columns=("user_id", "item_id"))
    assert where == str(csv)
    assert table.column("user_id").to_pylist() == ["0204", "+204"]
    assert table.column("item_id").to_pylist() == ["204.0", "204"]
    source = open_table(csv, text_columns=("user_id",))
    assert source.schema.field("user_id").type == pa.string()
    assert source.schema.field("rating").type == pa.int64()  # other columns typed as inferred
    parquet = write_as(tmp_path / "r.parquet")
    source = open_table(parquet, text_columns=("user_id", "item_id"))
    assert source.schema.field("user_id").type == pa.int64()  # Parquet columns stay as typed


def test_missing_path_and_glob_without_matches(tmp_path):
    assert "nope.csv: input file not found; check the path" in error_of(open_table, tmp_path / "nope.csv")
    assert "nope.csv: interaction file not found" in error_of(read_table, tmp_path / "nope.csv", None)
    message = error_of(open_table, str(tmp_path / "nothing-*.parquet"))
    assert "no input files match this pattern" in message
    (tmp_path / "notes.txt").write_text("x")
    message = error_of(expand_input, str(tmp_path / "*.txt"))
    assert "none of the 1 matching file(s) is CSV or Parquet" in message and ".parq" in message


def test_unsupported_suffix_lists_the_accepted_ones(tmp_path):
    path = tmp_path / "ratings.json"
    path.write_text("{}")
    message = error_of(read_table, path, None)
    assert "ratings.json: unsupported file type '.json'" in message
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        assert suffix in message
    (tmp_path / "noext").write_text("a,b\n1,2\n")
    assert "unsupported file type '(no suffix)'" in error_of(open_table, tmp_path / "noext")


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    for call in (open_table, lambda p: read_table(p, None)):
        assert f"{name}: " in (message := error_of(call, tmp_path / name)) and "is empty" in message
    gz = tmp_path / "empty.csv.gz"  # not 0 bytes, but no header either
    gz.write_bytes(gzip.compress(b""))
    assert "empty.csv.gz: interaction file is empty" in error_of(read_table, gz, None)


def test_header_only_csv_gives_zero_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("user_id,item_id,rating\n")
    table, _ = read_table(path, ["user_id", "rating"], text_columns=("user_id",))
    assert table.num_rows == 0 and table.column_names == ["user_id", "rating"]
    source = open_table(path)
    assert source.schema.names == ["user_id", "item_id", "rating"]
    assert sum(b.num_rows for _, b in source.batches(["user_id"], 10)) == 0


def test_ragged_row_names_its_data_row(tmp_path, monkeypatch):
    path = tmp_path / "ragged.csv"
    path.write_text("user_id,item_id,x\n1000,5,1\n1007,8\n")
    for call in (open_table, lambda p: read_table(p, None)):
        message = error_of(call, path)
        assert f"ragged.csv: ragged CSV row at {row_label(1)}: 2 field(s) where the header has 3" in message
        assert "'1007,8'" in message
    # far beyond the first block, found while streaming (multi-threaded reads do not say where)
    monkeypatch.setattr(tables, "CSV_BLOCK_SIZE", 1 << 16)
    lines = [f"{k},{k % 7},{k % 5}" for k in range(50_000)]
    lines[43_210] = "1,2"
    big = tmp_path / "big.csv"
    big.write_text("user_id,item_id,x\n" + "\n".join(lines) + "\n")
    source = open_table(big)
    message = error_of(lambda: list(source.batches(["user_id", "x"], 1000)))
    assert f"ragged CSV row at {row_label(43_210)}:" in message
    message = error_of(read_table, big, ["user_id"])
    assert f"ragged CSV row at {row_label(43_210)}:" in message


def test_streamed_value_of_another_type_names_row_and_column(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CSV_BLOCK_SIZE", 1 << 16)
    lines = [f"{k},{k},{k}" for k in range(50_000)]
    lines[40_000] = "5,5,abc"
    path = tmp_path / "conv.csv"
    path.write_text("user_id,item_id,x\n" + "\n".join(lines) + "\n")
    source = open_table(path, text_columns=("user_id", "item_id"))
    message = error_of(lambda: list(source.batches(["user_id", "x"], 1000)))
    assert f"conv.csv: value 'abc' in column 'x' at {row_label(40_000)} is not int64" in message
    # reading whole, the column is read as text instead, so the caller's checks name the row
    table, _ = read_table(path, ["x"])
    assert table.column("x").type == pa.string() and table.column("x")[40_000].as_py() == "abc"


def test_unreadable_or_truncated_parquet(tmp_path):
    good = write_as(tmp_path / "good.parquet")
    data = good.read_bytes()
    (tmp_path / "trunc.parquet").write_bytes(data[: len(data) // 2])
    for call in (open_table, lambda p: read_table(p, None)):
        message = error_of(call, tmp_path / "trunc.parquet")
        assert "trunc.parquet: cannot read Parquet" in message and "truncated" in message
    (tmp_path / "fake.pq").write_text("user_id,item_id\n1,2\n")
    assert "fake.pq: cannot read Parquet" in error_of(open_table, tmp_path / "fake.pq")
    parts = tmp_path / "parts"
    parts.mkdir()
    write_as(parts / "a.parquet")
    (parts / "b.parquet").write_bytes(data[:20])
    assert "b.parquet: cannot read Parquet input" in error_of(open_table, parts)


def test_directory_without_data_files(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("x")
    (folder / "_tmp").mkdir()
    write_as(folder / "_tmp" / "part-0.parquet")  # under an ignored folder
    write_as(folder / ".hidden.csv")
    message = error_of(open_table, folder)
    assert "out: input directory holds no data files" in message and ".parquet" in message
    assert "no data files" in error_of(read_interactions, folder)


def test_csv_and_parquet_mixed(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_as(folder / "a.csv")
    write_as(folder / "b.parquet")
    assert "mixed: mixes CSV and Parquet files" in error_of(open_table, folder)
    assert "mixes CSV and Parquet" in error_of(read_table, str(folder / "*"), None)


def test_directory_reads_partitions_and_ignores_markers(tmp_path):
    folder = tmp_path / "ds"
    for day, frame in (("1", FRAME.iloc[:2]), ("2", FRAME.iloc[2:])):
        (folder / f"day={day}").mkdir(parents=True)
        write_as(folder / f"day={day}" / "part-0.parquet", frame)
    (folder / "_SUCCESS").write_text("")
    (folder / "_common_metadata").write_text("not parquet")
    (folder / "day=1" / ".part-0.parquet.crc").write_text("x")
    source = open_table(folder)
    assert source.total_rows == 4 and len(source.files) == 2 and "day" in source.schema.names
    got = streamed(source, ["user_id", "day"])
    assert got["user_id"].tolist() == [3, 1, 2, 1] and got["day"].tolist() == [1, 1, 2, 2]
    table, _ = read_table(folder, ["day", "rating"])
    assert table.column("day").to_pylist() == [1, 1, 2, 2]
    pd.testing.assert_frame_equal(read_interactions(folder), read_interactions(FRAME))


def test_glob_and_csv_directory_count_rows_over_the_whole_input(tmp_path):
    folder = tmp_path / "csvs"
    folder.mkdir()
    write_as(folder / "part-0.csv", FRAME.iloc[:3])
    write_as(folder / "part-1.csv.gz", FRAME.iloc[3:])
    for path in (folder, str(folder / "part-*")):
        source = open_table(path)
        pieces = list(source.batches(["user_id"], 1000))
        assert [first for first, _ in pieces] == [0, 3]
        table, _ = read_table(path, ["user_id", "rating"])
        assert table.column("user_id").to_pylist() == [3, 1, 2, 1]


def test_csv_files_stream_with_the_first_files_types(tmp_path):
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "a.csv").write_text("user_id,x\n1,2\n")
    (folder / "b.csv").write_text("user_id,x\n3,4.5\n")
    source = open_table(folder)
    message = error_of(lambda: list(source.batches(["user_id", "x"], 10)))
    assert f"b.csv: value '4.5' in column 'x' at {row_label(0)} is not int64" in message
    # read whole, the files' types are reconciled (ints and floats -> floats)
    table, _ = read_table(folder, None)
    assert table.column("x").to_pylist() == [2.0, 4.5]
    (folder / "b.csv").write_text("user_id,x\n3,abc\n")
    table, _ = read_table(folder, None)
    assert table.column("x").to_pylist() == ["2", "abc"]  # all as text: callers name the row


def test_missing_columns(tmp_path):
    path = write_as(tmp_path / "r.csv")
    message = error_of(read_table, path, ["user_id", "book_id"], hint="use --item-col")
    assert "r.csv: missing interaction column(s) 'book_id'; the columns are 'user_id'" in message
    assert message.endswith("; use --item-col")
    for name in ("r.csv", "r.parquet"):
        source = open_table(write_as(tmp_path / name))
        message = error_of(lambda s=source: list(s.batches(["user_id", "nope"], 10)))
        assert "missing input column(s) 'nope'" in message
    folder = tmp_path / "csvs"
    folder.mkdir()
    write_as(folder / "a.csv")
    (folder / "b.csv").write_text("user_id,rating\n1,2\n")
    source = open_table(folder)
    message = error_of(lambda: list(source.batches(["user_id", "item_id"], 10)))
    assert "b.csv: missing input column(s) 'item_id'" in message


def test_parquet_start_row_skips_row_groups_and_files(tmp_path):
    frame = pd.DataFrame({"user_id": range(1000), "item_id": range(1000)})
    path = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=100)
    pieces = list(open_table(path).batches(["user_id"], 64, start_row=250))
    assert pieces[0][0] == 200  # the row group holding row 250 starts at 200
    rows = pa.Table.from_batches([b for _, b in pieces]).column("user_id").to_pylist()
    assert rows == list(range(200, 1000))
    assert [first for first, _ in pieces] == sorted(first for first, _ in pieces)
    assert list(open_table(path).batches(["user_id"], 64, start_row=1000)) == []
    folder = tmp_path / "parts"
    folder.mkdir()
    for k in range(4):
        pq.write_table(pa.Table.from_pandas(frame.iloc[k * 250:(k + 1) * 250], preserve_index=False),
                       folder / f"part-{k}.parquet")
    source = open_table(folder)
    assert source.file_rows == [250] * 4 and source.total_rows == 1000
    pieces = list(source.batches(["user_id"], 100, start_row=600))
    assert pieces[0][0] == 500
    rows = pa.Table.from_batches([b for _, b in pieces]).column("user_id").to_pylist()
    assert rows == list(range(500, 1000))


def test_tsv_is_tab_separated(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("user_id\titem_id\trating\nu,1\t2\t3\n")
    table, _ = read_table(path, None, text_columns=("user_id",))
    assert table.column("user_id").to_pylist() == ["u,1"]
