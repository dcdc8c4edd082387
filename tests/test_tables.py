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
    monkeypatch.setattr(tables.files, "CSV_BLOCK_SIZE", 1 << 16)
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
    monkeypatch.setattr(tables.files, "CSV_BLOCK_SIZE", 1 << 16)
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


# -- the CSV dialect: separator, header row, column names (MovieLens' u.data) ----------------------
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
U_COLUMNS = ("user_id", "item_id", "rating", "ts")
MOVIELENS = tables.CsvDialect(sep="tab", header=False, columns=U_COLUMNS)


def test_movielens_u_data_reads_with_sep_and_no_header(tmp_path):
    path = tmp_path / "u.data"
    path.write_text(U_DATA)
    assert expand_input(path, dialect=MOVIELENS) == ("csv", [str(path)])
    df = read_interactions(path, dialect=MOVIELENS)
    assert df["user_id"].tolist() == [196, 186, 22] and df["rating"].tolist() == [3, 3, 1]
    source = open_table(path, text_columns=("user_id", "item_id"), dialect=MOVIELENS)
    assert source.schema.names == list(U_COLUMNS)
    got = streamed(source, ["item_id", "ts"])
    assert got["item_id"].tolist() == ["242", "302", "377"] and got["ts"].tolist()[0] == 881250949
    # .dat/.txt in a directory too, and a single file of any suffix (ml-100k's u1.base)
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.dat").write_text(U_DATA)
    (folder / "b.txt.gz").write_bytes(gzip.compress(U_DATA.encode()))
    (folder / "README").write_text("not data")
    table, _ = read_table(folder, ["user_id"], dialect=MOVIELENS)
    assert table.column("user_id").to_pylist() == [196, 186, 22] * 2
    base = tmp_path / "u1.base"
    base.write_text(U_DATA)
    assert read_table(base, ["rating"], dialect=MOVIELENS)[0].num_rows == 3


def test_a_data_file_without_sep_says_how_to_read_it(tmp_path):
    path = tmp_path / "u.data"
    path.write_text(U_DATA)
    message = error_of(read_interactions, path)
    assert "u.data: unsupported file type '.data'" in message and "--sep tab" in message
    assert "--no-header --columns" in message


def test_a_header_that_looks_like_data_is_named(tmp_path):
    path = tmp_path / "u.tsv"  # renamed: the first rating would silently become the header
    path.write_text(U_DATA)
    message = error_of(read_interactions, path)
    assert "missing interaction column(s) 'user_id', 'item_id', 'rating'" in message
    assert "the header row looks like data" in message and "--no-header --columns" in message
    source = open_table(path)
    message = error_of(lambda: list(source.batches(["user_id"], 10)))
    assert "the header row looks like data" in message
    # a real header that lacks a column is not called data
    message = error_of(read_interactions, write_as(tmp_path / "r.csv", FRAME.rename(columns={"rating": "5"})))
    assert "missing interaction column(s) 'rating'" in message and "looks like data" not in message
    assert not tables.header_looks_like_data([]) and tables.header_looks_like_data(["1", " 2.5", "-3"])


def test_no_header_rows_are_counted_from_the_first_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t4\n5\t6\t7\n")
    for call in (lambda p: open_table(p, dialect=MOVIELENS),
                 lambda p: read_table(p, None, dialect=MOVIELENS)):
        message = error_of(call, path)
        assert f"ragged CSV row at {row_label(1)}: 3 field(s) where --columns names 4" in message
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\tx\t4\n")
    df_error = error_of(read_interactions, bad, dialect=MOVIELENS)
    assert f"rating at {row_label(0)} in column 'rating' is 'x'" in df_error
    comma = tmp_path / "comma.data"  # the wrong separator: one field per line
    comma.write_text(U_DATA)
    dialect = tables.CsvDialect(sep=",", header=False, columns=U_COLUMNS)
    message = error_of(read_table, comma, ["user_id", "rating"], dialect=dialect)
    assert "missing interaction column(s) 'rating'; the columns are 'user_id'" in message
    assert "its rows have one field: is the separator ',' right? (--sep)" in message
    comma.write_text("1\t2\n3\t4\t5\n")  # rows of several fields, one too few names: ragged
    message = error_of(read_table, comma, None, dialect=MOVIELENS)
    assert f"at {row_label(1)}: 3 field(s) where the first row has 2" in message
    assert "is the separator" not in message
    (tmp_path / "empty.data").write_bytes(b"")
    assert "is empty; it needs data rows" in error_of(open_table, tmp_path / "empty.data", dialect=MOVIELENS)


def test_sep_overrides_the_suffix_and_parquet_ignores_the_dialect(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user_id;item_id;rating\n1;2;3\n")
    table, _ = read_table(path, None, dialect=tables.CsvDialect(sep=";"))
    assert table.column_names == ["user_id", "item_id", "rating"]
    parquet = write_as(tmp_path / "r.parquet")
    assert read_table(parquet, ["rating"], dialect=MOVIELENS)[0].num_rows == 4


@pytest.mark.parametrize(("options", "fragment"), [
    ({"sep": "::"}, "one-character separators only"),
    ({"sep": "\n"}, "must be one character other than a newline"),
    ({"header": False}, "--no-header (header=False) needs --columns"),
    ({"columns": ("a",)}, "add --no-header"),
    ({"header": False, "columns": ("a", "b", "a")}, "'a' more than once"),
    ({"header": False, "columns": ("a", "")}, "non-empty column names"),
])
def test_bad_dialects_are_one_line_config_errors(options, fragment):
    from recmodels.errors import ConfigError

    with pytest.raises(ConfigError, match=None) as info:
        tables.CsvDialect(**options)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_dialect_spellings():
    assert tables.CsvDialect(sep="\\t").sep == tables.CsvDialect(sep="TAB").sep == "\t"
    assert tables.CsvDialect(header=False, columns="a, b").columns == ("a", "b")
    assert tables.CsvDialect(**MOVIELENS.to_dict()) == MOVIELENS
    assert tables.CsvDialect().delimiter("x.TSV") == "\t" and tables.CsvDialect().delimiter("x.csv") == ","


def test_a_file_with_fewer_fields_takes_the_first_column_names(tmp_path):
    ids = tmp_path / "users.txt"
    ids.write_text("196\n186\n")
    table, _ = read_table(ids, None, dialect=MOVIELENS, text_columns=("user_id",))
    assert table.column_names == ["user_id"] and table.column("user_id").to_pylist() == ["196", "186"]
    assert open_table(ids, dialect=MOVIELENS).schema.names == ["user_id"]
    # the first row decides: a later row with more fields is ragged
    ids.write_text("196\n186\t242\n")
    assert f"ragged CSV row at {row_label(1)}: 2 field(s) where the first row has 1" in error_of(
        read_table, ids, None, dialect=MOVIELENS)
