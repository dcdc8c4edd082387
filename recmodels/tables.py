"""Reading tables (torch-free): CSV, compressed CSV, Parquet files, directories and globs -> Arrow.

Every table recmodels reads goes through here: interactions and pretrained item tables
(:func:`read_table`, whole) and the scorer's input (:func:`open_table`, streamed in record batches
in bounded memory). One suffix list, one way to turn an argument into files (:func:`expand_input`),
one set of read errors, one row convention (:func:`recmodels.errors.row_label`). Accepted:

* a file ending in one of :data:`CSV_SUFFIXES` (with a header row; ``.tsv`` is tab separated,
  ``.gz`` / ``.bz2`` are decompressed) or :data:`PARQUET_SUFFIXES`;
* with a :class:`CsvDialect` that names the separator (``--sep``): also files ending in one of
  :data:`TEXT_SUFFIXES` (``u.data``), and a single file of any other suffix (``u1.base``);
* a directory: every data file below it, recursively, read as one table in sorted path order;
  names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc``, ``_metadata``) and files with other
  suffixes are ignored; ``key=value`` folders of Parquet files (hive partitions) become columns;
* a glob (``parts/*.parquet``, ``**`` recursive): the matching data files.

A directory or glob must hold one kind of file, CSV or Parquet. How delimited text is read
(separator, header row or the column names) is one :class:`CsvDialect` that every reader takes;
Parquet ignores it. Typical use::

    table, where = read_table("ratings.csv.gz", ["user_id", "item_id", "rating"],
                              text_columns=("user_id", "item_id"))
    movielens = CsvDialect(sep="tab", header=False, columns=("user_id", "item_id", "rating", "ts"))
    table, where = read_table("ml-100k/u.data", None, dialect=movielens)
    source = open_table("candidates/", text_columns=("user_id", "item_id"))
    for first_row, batch in source.batches(["user_id", "item_id"], 65_536):
        ...
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import ConfigError, DataError, first_line, row_label

__all__ = ["CSV_SUFFIXES", "DEFAULT_DIALECT", "PARQUET_SUFFIXES", "TEXT_SUFFIXES", "CsvDialect",
           "TableSource", "expand_input", "header_looks_like_data", "missing_columns_error",
           "open_table", "read_table"]

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".tsv", ".tsv.gz")  # .tsv: tab separated
TEXT_SUFFIXES = tuple(s + z for s in (".data", ".dat", ".txt") for z in ("", ".gz", ".bz2"))
"""Read as delimited text only when the separator is given (:attr:`CsvDialect.sep`)."""
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
IGNORED_PREFIXES = (".", "_")  # not data inside a directory: Spark/Dask/Hadoop markers, temp dirs
CSV_BLOCK_SIZE = 8 << 20  # bytes per streamed CSV block (one record batch each)

_ACCEPTED = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


@dataclass(frozen=True)
class CsvDialect:
    """How delimited text files (CSV, TSV, MovieLens' ``u.data``) are read; Parquet ignores it.

    Parameters
    ----------
    sep : str or None
        The field separator: one character, or ``"tab"`` / ``"\\t"`` (also ``"comma"``,
        ``"semicolon"``, ``"pipe"``, ``"space"``). ``None`` (default): from the suffix, tab for
        ``.tsv`` and comma otherwise. A given separator also makes files ending in
        :data:`TEXT_SUFFIXES` (``.data``, ``.dat``, ``.txt``) readable, and a single file of any
        suffix but Parquet's.
    header : bool
        Whether the first line names the columns (default). ``False`` needs ``columns``.
    columns : sequence of str or None
        The names of the columns of a file without a header row, in order (a string
        ``"a,b,c"`` is split at commas). Only with ``header=False``. A file whose first row has
        fewer fields takes the first names (``user_id,item_id,rating`` reads a one-column id
        list as ``user_id``); more fields than names is a ragged-row error.

    Raises
    ------
    ConfigError
        A separator of several characters, a newline or a quote; ``header=False`` without
        ``columns``; ``columns`` with a header; empty or repeated names.

    Examples
    --------
    >>> CsvDialect(sep="tab", header=False, columns="user_id,item_id,rating,ts").columns
    ('user_id', 'item_id', 'rating', 'ts')
    >>> CsvDialect().delimiter("ratings.tsv.gz") == "\\t"
    True
    """

    sep: str | None = None
    header: bool = True
    columns: tuple[str, ...] | None = None

    def __post_init__(self):
        sep = self.sep
        if sep is not None:
            if not isinstance(sep, str):
                raise ConfigError(f"--sep (sep=) must be one character; got {sep!r}")
            sep = _SEP_NAMES.get(sep.lower() if len(sep) > 1 else sep, sep)
            if len(sep) != 1 or sep in "\r\n\"":
                hint = (" (pyarrow reads one-character separators only: convert the file first, "
                        "e.g. sed 's/::/\\t/g')" if len(sep) > 1 else "")
                raise ConfigError(f"--sep (sep=) must be one character other than a newline or a "
                                  f"quote, or 'tab'; got {self.sep!r}{hint}")
            object.__setattr__(self, "sep", sep)
        if not isinstance(self.header, bool):
            raise ConfigError(f"header must be true or false; got {self.header!r}")
        columns = self.columns
        if columns is not None:
            if isinstance(columns, str):
                columns = [c.strip() for c in columns.split(",")]
            columns = tuple(columns) if isinstance(columns, (list, tuple)) else ()
            if not columns or not all(isinstance(c, str) and c for c in columns):
                raise ConfigError(f"--columns (columns=) must be non-empty column names NAME,NAME,...; "
                                  f"got {self.columns!r}")
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            if repeated:
                raise ConfigError(f"--columns names {', '.join(map(repr, repeated))} more than once; "
                                  "each column needs its own name")
            object.__setattr__(self, "columns", columns)
        if not self.header and columns is None:
            raise ConfigError("--no-header (header=False) needs --columns NAME,NAME,... naming the "
                              "file's columns in order")
        if self.header and columns is not None:
            raise ConfigError("--columns names the columns of a file without a header row; add "
                              "--no-header (header=False), or leave --columns out to use the header")

    def delimiter(self, file: str) -> str:
        """The separator of ``file``: :attr:`sep`, or tab for ``.tsv`` and comma otherwise."""
        if self.sep is not None:
            return self.sep
        return "\t" if ".tsv" in file.lower() else ","

    def to_dict(self) -> dict:
        """``{"sep", "header", "columns"}`` (JSON-ready; ``CsvDialect(**d)`` inverts it)."""
        return {"sep": self.sep, "header": self.header,
                "columns": None if self.columns is None else list(self.columns)}


DEFAULT_DIALECT = CsvDialect()
"""Comma separated (tab for ``.tsv``), with a header row."""


def _kind(path: str, dialect: CsvDialect = DEFAULT_DIALECT, *, named: bool = False) -> str | None:
    """``"csv"``, ``"parquet"`` or None (not data); ``named``: the file itself was given."""
    name = path.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if dialect.sep is not None and (named or name.endswith(TEXT_SUFFIXES)):
        return "csv"
    return None


def expand_input(path, *, what: str = "input",
                 dialect: CsvDialect = DEFAULT_DIALECT) -> tuple[str, list[str]]:
    """Resolve a file, directory or glob into ``(kind, files)``: ``"csv"`` or ``"parquet"``, and
    the data files in reading order (sorted paths).

    ``what`` says what the input holds, for messages (``"input"``, ``"interaction"``, ...).
    ``dialect``: with a separator, files ending in :data:`TEXT_SUFFIXES` count as CSV too, and a
    file given by name may have any suffix.
    Raises :class:`DataError` when the path does not exist, a glob matches nothing, a directory
    holds no data files, a file has an unsupported suffix (the accepted ones are listed), or CSV
    and Parquet files are mixed.
    """
    dialect = dialect or DEFAULT_DIALECT
    text = os.fspath(path)
    if glob.has_magic(text):
        matches = sorted(f for f in glob.glob(text, recursive=True) if os.path.isfile(f))
        if not matches:
            raise DataError(f"{text}: no {what} files match this pattern; check the pattern")
        files = [f for f in matches if _kind(f, dialect)]
        if not files:
            raise DataError(
                f"{text}: none of the {len(matches)} matching file(s) is CSV or Parquet "
                f"(e.g. {matches[0]}); accepted suffixes: {_ACCEPTED}"
            )
    elif os.path.isdir(text):
        root = Path(text)
        files = sorted(
            str(p)
            for p in root.rglob("*")
            if _kind(p.name, dialect)
            and p.is_file()
            and not any(part.startswith(IGNORED_PREFIXES) for part in p.relative_to(root).parts)
        )
        if not files:
            raise DataError(
                f"{text}: {what} directory holds no data files ({_ACCEPTED}; names starting with "
                "'.' or '_' are ignored); pass a file, a directory of data files or a glob"
            )
    elif os.path.isfile(text):
        if _kind(text, dialect, named=True) is None:
            suffix = Path(text).suffix.lower()
            raise DataError(
                f"{text}: unsupported file type {suffix or '(no suffix)'!r}; use {_ACCEPTED}, "
                "or a directory or glob of such files; for delimited text with another suffix "
                "(MovieLens' u.data) give the separator: --sep tab (--no-header --columns "
                "NAME,... when it has no header row)"
            )
        files = [text]
    else:
        raise DataError(f"{text}: {what} file not found; check the path")
    csv_files = [f for f in files if _kind(f, dialect, named=len(files) == 1) == "csv"]
    if csv_files and len(csv_files) != len(files):
        other = next(f for f in files if f not in csv_files)
        raise DataError(
            f"{text}: mixes CSV and Parquet files (e.g. {csv_files[0]} and {other}); point at one kind"
        )
    return ("csv" if csv_files else "parquet"), files


def header_looks_like_data(names) -> bool:
    """Whether a header row's names all read as numbers (the file likely has no header row)."""
    names = [str(n).strip() for n in names]
    if not names:
        return False
    try:
        for name in names:
            float(name)
    except ValueError:
        return False
    return True


HEADER_IS_DATA_HINT = ("the header row looks like data (every name is a number): if the file has "
                       "no header row, use --no-header --columns NAME,NAME,... (header=False, "
                       "columns=... in Python)")


def missing_columns_error(where: str, wanted, available, what: str, hint: str = "", *,
                          header_row: bool = False) -> DataError:
    """The one message for columns a table lacks: which are missing, which exist, what to do.

    ``header_row``: ``available`` was read from a CSV header row; when its names all read as
    numbers the message says the header looks like data (and how to read a file without one).
    """
    missing = [c for c in wanted if c not in available]
    shown = ", ".join(repr(c) for c in available[:20]) + (" ..." if len(available) > 20 else "")
    hints = [HEADER_IS_DATA_HINT] if header_row and header_looks_like_data(available) else []
    hints += [hint] if hint else []
    return DataError(
        f"{where}: missing {what} column(s) {', '.join(repr(c) for c in missing)}; "
        f"the columns are {shown}" + "".join(f"; {h}" for h in hints)
    )


def _check_not_empty(file: str, kind: str, what: str, dialect: CsvDialect) -> None:
    try:
        empty = os.path.getsize(file) == 0
    except OSError as exc:
        raise DataError(f"{file}: cannot read {what} file ({exc.strerror or first_line(exc)})") from None
    if empty:
        raise _empty_error(file, kind, what, dialect)


def _empty_error(file: str, kind: str, what: str, dialect: CsvDialect) -> DataError:
    if kind == "csv":
        need = "it needs a header row and data rows" if dialect.header else "it needs data rows"
    else:
        need = "write it again or remove it"
    return DataError(f"{file}: {what} file is empty; {need}")


def _parse_options(file: str, dialect: CsvDialect) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(delimiter=dialect.delimiter(file))


def _read_options(file: str, dialect: CsvDialect, **options) -> pacsv.ReadOptions:
    if not dialect.header:
        options["column_names"] = _file_columns(file, dialect)
    return pacsv.ReadOptions(**options)


def _convert_options(types: dict, include: list[str] | None) -> pacsv.ConvertOptions:
    # One null rule for training and scoring: an empty cell is null; "NA", "null", "nan"... are text
    # (they may be real string ids), not pyarrow's default null spellings.
    return pacsv.ConvertOptions(
        column_types=types, include_columns=include or [], strings_can_be_null=True, null_values=[""]
    )


def _first_row(file: str, dialect: CsvDialect, size: int = 1 << 20) -> list[str]:
    """The first line's fields, read with Python's csv module ([] when unreadable)."""
    try:
        with pa.input_stream(file, compression="detect") as stream:
            head = stream.read(size).decode("utf-8", "replace")
    except (pa.ArrowException, OSError):
        return []
    return next(csv.reader(io.StringIO(head), delimiter=dialect.delimiter(file)), [])


def _file_columns(file: str, dialect: CsvDialect) -> list[str]:
    """The column names of a file without a header row: the first of :attr:`CsvDialect.columns`,
    as many as its first row has fields (so one ``--columns`` serves a one-column id list and a
    ratings file alike); all of them when it has more or cannot be read (Arrow then names the row)."""
    names = list(dialect.columns)
    fields = len(_first_row(file, dialect, 1 << 16))
    return names[:fields] if 0 < fields < len(names) else names


def _csv_header(file: str, dialect: CsvDialect) -> list[str]:
    """The header's names, read with Python's csv module (for messages; [] when unreadable)."""
    if not dialect.header:
        return _file_columns(file, dialect)
    return _first_row(file, dialect)


def _csv_schema(file: str, types: dict, what: str, dialect: CsvDialect,
                block_size: int | None = None) -> pa.Schema:
    """Schema of a CSV file as it will be read (types inferred from its first block)."""
    parse = _parse_options(file, dialect)
    convert = _convert_options(types, None)
    read = _read_options(file, dialect, **({"block_size": block_size} if block_size else {}))
    try:
        with pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert) as reader:
            return reader.schema
    except (pa.ArrowException, OSError) as exc:
        raise _csv_error(file, exc, parse, convert, what, dialect) from None


def _serial_error(file: str, parse, convert, dialect: CsvDialect) -> str | None:
    """Re-read a CSV single-threaded to learn where it fails: only then does Arrow say ``Row #N``."""
    read = _read_options(file, dialect, use_threads=False, block_size=CSV_BLOCK_SIZE)
    try:
        with pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert) as r:
            for _ in r:
                pass
    except (pa.ArrowException, OSError) as exc:
        return first_line(exc)
    return None


def _csv_error(file: str, exc: BaseException, parse, convert, what: str,
               dialect: CsvDialect) -> DataError:
    """One line for a CSV that cannot be read, naming the data row when Arrow can find it."""
    message = first_line(exc)
    if "empty csv" in message.lower():
        return _empty_error(file, "csv", what, dialect)
    if isinstance(exc, pa.ArrowKeyError) and "include_columns" in message:
        names = _csv_header(file, dialect)
        wanted = list(convert.include_columns)
        return missing_columns_error(file, wanted, names, what, header_row=dialect.header)
    if isinstance(exc, pa.ArrowInvalid) and "Row #" not in message:
        message = _serial_error(file, parse, convert, dialect) or message
    row = re.search(r"Row #(\d+)", message)
    # Arrow counts the lines of the file from 1, the header row included
    first_data_line = 2 if dialect.header else 1
    at = (f" at {row_label(int(row.group(1)) - first_data_line)}"
          if row and int(row.group(1)) >= first_data_line else "")
    ragged = re.search(r"Expected (\d+) columns, got (\d+): ?(.*)$", message)
    if ragged:
        expected, got, text = ragged.groups()
        if dialect.header:
            names, need = f"the header has {expected}", "every row needs the header's columns"
        elif int(expected) == len(dialect.columns):
            names, need = (f"--columns names {expected}",
                           "name every column of the file with --columns (columns=)")
        else:  # the first row had fewer fields than --columns has names
            names, need = (f"the first row has {expected}",
                           "every row needs as many fields as the first")
        if got == "1" and expected != "1":
            need += f"; is the separator {parse.delimiter!r} right? (--sep)"
        return DataError(f"{file}: ragged CSV row{at}: {got} field(s) where {names} ({text[:80]!r}); {need}")
    conversion = re.search(r"column #(\d+).*conversion error to (\w+): invalid value (.*)$", message)
    if conversion:
        index, typ, value = conversion.groups()
        names = _csv_header(file, dialect)
        name = names[int(index)] if int(index) < len(names) else f"#{index}"
        return DataError(
            f"{file}: value {value} in column {name!r}{at} is not {typ} like the rows before it "
            "(a column's type comes from its first rows); fix the value"
        )
    return DataError(f"{file}: cannot read CSV ({message})")


def _read_csv(file: str, include: list[str], text_columns, what: str, dialect: CsvDialect) -> pa.Table:
    """One whole CSV file; if a later block disagrees with the types inferred from the first
    ("abc" in a numeric column), every column is read as text so the caller's checks name the row."""
    parse = _parse_options(file, dialect)
    convert = _convert_options({c: pa.string() for c in text_columns if c in include}, include)
    try:
        return pacsv.read_csv(file, read_options=_read_options(file, dialect), parse_options=parse,
                              convert_options=convert)
    except (pa.ArrowException, OSError) as exc:
        if not (isinstance(exc, pa.ArrowInvalid) and "conversion error" in str(exc)):
            raise _csv_error(file, exc, parse, convert, what, dialect) from None
    return _read_csv_text(file, include, what, dialect)


def _read_csv_text(file: str, include: list[str], what: str, dialect: CsvDialect) -> pa.Table:
    parse = _parse_options(file, dialect)
    convert = _convert_options({c: pa.string() for c in include}, include)
    try:
        return pacsv.read_csv(file, read_options=_read_options(file, dialect), parse_options=parse,
                              convert_options=convert)
    except (pa.ArrowException, OSError) as exc:
        raise _csv_error(file, exc, parse, convert, what, dialect) from None


def _parquet_read_error(where: str, exc: BaseException, what: str) -> DataError:
    return DataError(
        f"{where}: cannot read Parquet {what} ({first_line(exc)}); is it truncated or not Parquet?"
    )


def read_table(
    source, wanted: list[str] | None, *, what: str = "interaction", text_columns=(), hint: str = "",
    dialect: CsvDialect | None = None,
) -> tuple[pa.Table, str]:
    """Read a whole CSV/Parquet file, directory or glob into one Arrow table.

    Parameters
    ----------
    source : str or path-like
        See the module docstring for what is accepted.
    wanted : list of str or None
        Columns to read, in this order (all when ``None``); missing ones raise
        :class:`DataError` listing the columns that exist.
    what : str
        What the input holds, for messages (``"interaction"``, ``"item embedding"``).
    text_columns : sequence of str
        CSV columns read as Arrow strings rather than type-inferred (id columns: ``"0204"`` must
        stay as written; :mod:`recmodels.ids` decides what the text means). Ignored for Parquet,
        whose columns are read as typed.
    hint : str
        Appended to the missing-columns message (e.g. which options name the columns).
    dialect : CsvDialect, optional
        How delimited text is read (separator, header row or column names); default
        :data:`DEFAULT_DIALECT`.

    Returns
    -------
    (pyarrow.Table, str)
        The table and the input as given (for messages). A header-only CSV gives zero rows
        (callers decide). Empty cells are nulls. A CSV column whose later rows disagree with the
        type inferred from its first block is read as text, so the caller's checks can name the
        bad row. Files are concatenated in path order: rows count over the whole input.

    Raises
    ------
    DataError
        As :func:`open_table`, and a ragged CSV row or missing columns.

    Examples
    --------
    >>> table, where = read_table("ratings.csv", ["user_id", "item_id", "rating"])  # doctest: +SKIP
    """
    dialect = dialect or DEFAULT_DIALECT
    table = open_table(source, text_columns=text_columns, what=what, dialect=dialect)
    names = table.schema.names
    if wanted is not None and any(c not in names for c in wanted):
        raise table.missing_columns_error(wanted, hint)
    include = list(wanted) if wanted is not None else names
    if table.kind == "parquet":
        try:
            if table._dataset is None:
                return pq.read_table(table.files[0], columns=include), table.path
            return table._dataset.to_table(columns=include), table.path
        except (pa.ArrowException, OSError) as exc:
            raise _parquet_read_error(table.path, exc, what) from None
    parts = [_read_csv(file, include, text_columns, what, dialect) for file in table.files]
    if len(parts) == 1:
        return parts[0], table.path
    try:
        return pa.concat_tables(parts, promote_options="permissive"), table.path
    except (pa.ArrowException, TypeError):  # e.g. numbers in one file, text in another: all as text
        parts = [_read_csv_text(file, include, what, dialect) for file in table.files]
        return pa.concat_tables(parts), table.path


def open_table(path, *, text_columns=(), what: str = "input",
               dialect: CsvDialect | None = None) -> TableSource:
    """Open a CSV/Parquet file, directory or glob for streaming.

    Parameters
    ----------
    path : str or path-like
        See the module docstring for what is accepted.
    text_columns : sequence of str
        CSV columns read as Arrow strings (id columns; :mod:`recmodels.ids` maps text ids onto
        any id kind). Ignored for Parquet, whose columns stream as typed.
    what : str
        What the input holds, for messages.
    dialect : CsvDialect, optional
        How delimited text is read; default :data:`DEFAULT_DIALECT`.

    Returns
    -------
    TableSource
        Only the schema and (for Parquet) the row counts are read here.

    Raises
    ------
    DataError
        Missing path, no matching files, empty (0-byte) file, unsupported suffix, mixed CSV and
        Parquet, unreadable or truncated Parquet, a CSV whose first block cannot be parsed.

    Examples
    --------
    >>> source = open_table("scores_in/", text_columns=("user_id", "item_id"))  # doctest: +SKIP
    >>> for first_row, batch in source.batches(["user_id", "item_id"], 65_536):  # doctest: +SKIP
    ...     ...
    """
    dialect = dialect or DEFAULT_DIALECT
    text = os.fspath(path)
    kind, files = expand_input(text, what=what, dialect=dialect)
    for file in files:
        _check_not_empty(file, kind, what, dialect)
    if kind == "csv":
        schema = _csv_schema(files[0], {c: pa.string() for c in text_columns}, what, dialect,
                             CSV_BLOCK_SIZE)
        return TableSource(text, "csv", files, schema, None, what=what, dialect=dialect)
    file_rows = []
    for file in files:
        try:
            file_rows.append(pq.read_metadata(file).num_rows)
        except (pa.ArrowException, OSError) as exc:
            raise _parquet_read_error(file, exc, what) from None
    dataset, base = None, (text if os.path.isdir(text) else None)
    try:
        if len(files) == 1 and base is None:
            schema = pq.read_schema(files[0])
        else:
            dataset = ds.dataset(
                files, format="parquet", partitioning="hive" if base else None, partition_base_dir=base
            )
            schema = dataset.schema
    except (pa.ArrowException, OSError) as exc:
        raise _parquet_read_error(text, exc, what) from None
    return TableSource(
        text, "parquet", files, schema, sum(file_rows), what=what, file_rows=file_rows,
        _dataset=dataset, _base_dir=base,
    )


@dataclass
class TableSource:
    """An opened input: its schema, its row count when known, and its batches.

    Attributes
    ----------
    path : str
        The input as given (for messages).
    kind : {"csv", "parquet"}
    files : list of str
        The data files, in reading order.
    schema : pyarrow.Schema
        Columns as they will be read (CSV: types inferred from the first file's first block,
        ``text_columns`` as strings; Parquet directories: hive partition columns included).
    total_rows : int or None
        From the Parquet metadata; None for CSV (known only once read).
    what : str
        What the input holds, for messages.
    dialect : CsvDialect
        How its CSV files are read.
    """

    path: str
    kind: str
    files: list[str]
    schema: pa.Schema
    total_rows: int | None
    what: str = "input"
    dialect: CsvDialect = DEFAULT_DIALECT
    file_rows: list[int] = field(default_factory=list, repr=False)
    _dataset: ds.Dataset | None = field(default=None, repr=False)
    _base_dir: str | None = field(default=None, repr=False)

    @property
    def header_looks_like_data(self) -> bool:
        """Whether this is CSV read with a header row whose names all read as numbers (likely a
        file without a header: its first row was taken for the names)."""
        return self.kind == "csv" and self.dialect.header and header_looks_like_data(self.schema.names)

    def missing_columns_error(self, wanted, hint: str = "") -> DataError:
        """:func:`missing_columns_error` for ``wanted`` columns this input lacks (a CSV header
        that looks like data is said so, and a file without a header whose rows have one field
        asks about the separator)."""
        names, dialect = self.schema.names, self.dialect
        if self.kind == "csv" and not dialect.header and len(names) == 1 < len(dialect.columns):
            sep = _parse_options(self.files[0], dialect).delimiter
            hint = f"its rows have one field: is the separator {sep!r} right? (--sep)" + (
                f"; {hint}" if hint else "")
        return missing_columns_error(self.path, wanted, names, self.what, hint,
                                     header_row=self.kind == "csv" and dialect.header)

    def batches(
        self, columns: list[str], batch_size: int, start_row: int = 0
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Stream ``columns`` as ``(first_row, batch)`` pairs, rows counted from 0 over the input.

        Parameters
        ----------
        columns : list of str
            Columns to read, in this order.
        batch_size : int
            Rows per Parquet batch (at most); a CSV batch is one :data:`CSV_BLOCK_SIZE` block.
        start_row : int
            Parquet inputs skip whole files and row groups that lie entirely before it (used by
            resume); batches may still start before ``start_row``. CSV inputs stream every row.

        Yields
        ------
        (int, pyarrow.RecordBatch)
            The input row of the batch's first row, and the batch. CSV text cells are kept as
            written (empty is ``""``, not null), so passed-through columns round-trip.

        Raises
        ------
        DataError
            A missing column (CSV: in any file), a ragged CSV row or a value that does not parse
            as its column's type (the data row named), an unreadable file.
        """
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise self.missing_columns_error(columns)
        if self.kind == "csv":
            yield from self._csv_batches(list(columns))
        else:
            yield from self._parquet_batches(list(columns), batch_size, start_row)

    def _csv_batches(self, columns):
        # Every file is read with the types of self.schema, so all batches share one schema.
        fields = [self.schema.field(c) for c in columns]
        types = {f.name: f.type for f in fields if not pa.types.is_null(f.type)}
        offset = 0
        for file in self.files:
            read = _read_options(file, self.dialect, block_size=CSV_BLOCK_SIZE, use_threads=True)
            parse = _parse_options(file, self.dialect)
            convert = _convert_options(types, columns)
            try:
                reader = pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert)
            except (pa.ArrowException, OSError) as exc:
                raise _csv_error(file, exc, parse, convert, self.what, self.dialect) from None
            with reader:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except (pa.ArrowException, OSError) as exc:
                        raise _csv_error(file, exc, parse, convert, self.what, self.dialect) from None
                    yield offset, batch.select(columns)
                    offset += batch.num_rows

    def _parquet_batches(self, columns, batch_size, start_row):
        try:
            if self._dataset is None:
                # pre_buffer (pyarrow's default) caches the column chunks of every row group it
                # reads ahead until the reader is done: RSS grew with the input size
                pfile = pq.ParquetFile(self.files[0], pre_buffer=False)
                meta = pfile.metadata
                sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
                groups, offset = _pieces_from(sizes, start_row)
                if not groups:
                    return
                iterator = pfile.iter_batches(batch_size=batch_size, columns=columns, row_groups=groups)
            else:
                chosen, offset = _pieces_from(self.file_rows, start_row)
                if not chosen:
                    return
                dataset = self._dataset
                if len(chosen) != len(self.files):
                    dataset = ds.dataset(
                        [self.files[k] for k in chosen],
                        schema=dataset.schema,
                        format="parquet",
                        partitioning="hive" if self._base_dir else None,
                        partition_base_dir=self._base_dir,
                    )
                iterator = dataset.to_batches(
                    columns=columns,
                    batch_size=batch_size,
                    batch_readahead=2,
                    fragment_readahead=1,
                    fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
                )
            for batch in iterator:
                yield offset, batch
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _parquet_read_error(self.path, exc, self.what) from None


def _pieces_from(sizes, start_row: int) -> tuple[list[int], int]:
    """Indices of the consecutive pieces (row groups, files) holding rows at or after
    ``start_row``, and the input row where the first of them starts."""
    chosen, offset, first = [], 0, None
    for k, rows in enumerate(sizes):
        if offset + rows > start_row:
            chosen.append(k)
            first = offset if first is None else first
        offset += rows
    return chosen, (offset if first is None else first)
