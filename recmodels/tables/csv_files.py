"""Delimited text through pyarrow: options from a :class:`~.files.CsvDialect`, headers, and read
errors turned into one line naming the file, row and column."""

from __future__ import annotations

import csv
import io
import os
import re

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import DataError, first_line, row_label
from . import files as _files
from .files import CsvDialect, missing_columns_error


def check_not_empty(file: str, kind: str, what: str, dialect: CsvDialect) -> None:
    """One line when ``file`` has no bytes, or (CSV with a header) no header row."""
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


def parse_options(file: str, dialect: CsvDialect) -> pacsv.ParseOptions:
    """pyarrow parse options: the separator the dialect gives for ``file``."""
    return pacsv.ParseOptions(delimiter=dialect.delimiter(file))


def read_options(file: str, dialect: CsvDialect, **options) -> pacsv.ReadOptions:
    """pyarrow read options: the column names when the file has no header row."""
    if not dialect.header:
        options["column_names"] = _file_columns(file, dialect)
    return pacsv.ReadOptions(**options)


def convert_options(types: dict, include: list[str] | None) -> pacsv.ConvertOptions:
    """pyarrow conversion options: column types, the included columns, the one null rule."""
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


def csv_schema(file: str, types: dict, what: str, dialect: CsvDialect,
                block_size: int | None = None) -> pa.Schema:
    """Schema of a CSV file as it will be read (types inferred from its first block)."""
    parse = parse_options(file, dialect)
    convert = convert_options(types, None)
    read = read_options(file, dialect, **({"block_size": block_size} if block_size else {}))
    try:
        with pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert) as reader:
            return reader.schema
    except (pa.ArrowException, OSError) as exc:
        raise csv_error(file, exc, parse, convert, what, dialect) from None


def _serial_error(file: str, parse, convert, dialect: CsvDialect) -> str | None:
    """Re-read a CSV single-threaded to learn where it fails: only then does Arrow say ``Row #N``."""
    read = read_options(file, dialect, use_threads=False, block_size=_files.CSV_BLOCK_SIZE)
    try:
        with pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert) as r:
            for _ in r:
                pass
    except (pa.ArrowException, OSError) as exc:
        return first_line(exc)
    return None


def csv_error(file: str, exc: BaseException, parse, convert, what: str,
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


def read_csv(file: str, include: list[str], text_columns, what: str, dialect: CsvDialect) -> pa.Table:
    """One whole CSV file; if a later block disagrees with the types inferred from the first
    ("abc" in a numeric column), every column is read as text so the caller's checks name the row."""
    parse = parse_options(file, dialect)
    convert = convert_options({c: pa.string() for c in text_columns if c in include}, include)
    try:
        return pacsv.read_csv(file, read_options=read_options(file, dialect), parse_options=parse,
                              convert_options=convert)
    except (pa.ArrowException, OSError) as exc:
        if not (isinstance(exc, pa.ArrowInvalid) and "conversion error" in str(exc)):
            raise csv_error(file, exc, parse, convert, what, dialect) from None
    return read_csv_text(file, include, what, dialect)


def read_csv_text(file: str, include: list[str], what: str, dialect: CsvDialect) -> pa.Table:
    """One whole CSV file with every included column as text."""
    parse = parse_options(file, dialect)
    convert = convert_options({c: pa.string() for c in include}, include)
    try:
        return pacsv.read_csv(file, read_options=read_options(file, dialect), parse_options=parse,
                              convert_options=convert)
    except (pa.ArrowException, OSError) as exc:
        raise csv_error(file, exc, parse, convert, what, dialect) from None
