"""Tables whole (:func:`read_table`) or streamed in record batches (:class:`TableSource`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..errors import DataError, first_line
from . import files as _files
from .csv_files import (
    check_not_empty,
    convert_options,
    csv_error,
    csv_schema,
    parse_options,
    read_csv,
    read_csv_text,
    read_options,
)
from .files import (
    DEFAULT_DIALECT,
    CsvDialect,
    expand_input,
    header_looks_like_data,
    missing_columns_error,
)


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
    parts = [read_csv(file, include, text_columns, what, dialect) for file in table.files]
    if len(parts) == 1:
        return parts[0], table.path
    try:
        return pa.concat_tables(parts, promote_options="permissive"), table.path
    except (pa.ArrowException, TypeError):  # e.g. numbers in one file, text in another: all as text
        parts = [read_csv_text(file, include, what, dialect) for file in table.files]
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
        check_not_empty(file, kind, what, dialect)
    if kind == "csv":
        schema = csv_schema(files[0], {c: pa.string() for c in text_columns}, what, dialect,
                             _files.CSV_BLOCK_SIZE)
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
            sep = parse_options(self.files[0], dialect).delimiter
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
            read = read_options(file, self.dialect, block_size=_files.CSV_BLOCK_SIZE, use_threads=True)
            parse = parse_options(file, self.dialect)
            convert = convert_options(types, columns)
            try:
                reader = pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert)
            except (pa.ArrowException, OSError) as exc:
                raise csv_error(file, exc, parse, convert, self.what, self.dialect) from None
            with reader:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except (pa.ArrowException, OSError) as exc:
                        raise csv_error(file, exc, parse, convert, self.what, self.dialect) from None
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
