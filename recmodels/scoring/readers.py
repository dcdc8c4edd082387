"""Streaming readers for the scorer's input: CSV (optionally gzipped), Parquet files, directories
of Parquet files (hive partitions included) and globs. Memory stays bounded: nothing reads a whole
file, only record batches.
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

from ..errors import DataError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".csv.bz2")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_IGNORED_PREFIXES = (".", "_")
CSV_BLOCK_SIZE = 8 << 20


def _is_csv(path: str) -> bool:
    return path.lower().endswith(CSV_SUFFIXES)


def _arrow_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def id_arrow_type(kind: str) -> pa.DataType:
    """Arrow type of a bundle's ids (``IdEncoder.kind_``)."""
    return pa.int64() if kind == "int64" else pa.string()


@dataclass
class InputSource:
    """An opened input: its schema, row count when known, and a way to stream its batches.

    Attributes
    ----------
    path : str
        The input as given (for messages).
    kind : {"csv", "parquet"}
    files : list of str
    schema : pyarrow.Schema
        Columns as they will be read (id columns already typed as the bundle's ids).
    total_rows : int or None
        Known up front for Parquet (from metadata), None for CSV.
    """

    path: str
    kind: str
    files: list[str]
    schema: pa.Schema
    total_rows: int | None
    id_types: dict[str, pa.DataType] = field(default_factory=dict)
    _dataset: ds.Dataset | None = field(default=None, repr=False)
    file_rows: list[int] = field(default_factory=list)
    _partitioning: str | None = None
    _base_dir: str | None = None

    def batches(
        self, columns: list[str], batch_size: int, start_row: int = 0
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Stream ``columns`` as ``(first_row, batch)`` pairs, rows counted from 0 over the input.

        ``start_row`` lets Parquet inputs skip whole files and row groups that lie entirely
        before it (used by ``--resume``); batches may still start before ``start_row``.
        """
        if self.kind == "csv":
            yield from self._csv_batches(columns)
        else:
            yield from self._parquet_batches(columns, batch_size, start_row)

    # -- CSV --------------------------------------------------------------------------------
    def _csv_batches(self, columns):
        offset = 0
        for file in self.files:
            reader = _open_csv(file, self.id_types)
            names = reader.schema.names
            missing = [c for c in columns if c not in names]
            if missing:
                raise DataError(f"{file}: no column {missing[0]!r} (columns: {', '.join(names)})")
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as exc:
                    raise _csv_error(file, exc, names, self.id_types) from None
                yield offset, batch.select(columns)
                offset += batch.num_rows

    # -- Parquet ----------------------------------------------------------------------------
    def _parquet_batches(self, columns, batch_size, start_row):
        try:
            if self._dataset is None:
                # pre_buffer (pyarrow's default) caches the column chunks of every row group
                # it reads ahead until the reader is done: RSS grew with the input size
                pfile = pq.ParquetFile(self.files[0], pre_buffer=False)
                meta = pfile.metadata
                sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
                groups, first = _pieces_from(sizes, start_row)
                if not groups:
                    return
                iterator = pfile.iter_batches(
                    batch_size=batch_size, columns=columns, row_groups=groups
                )
                offset = first
            else:
                chosen, first = _pieces_from(self.file_rows, start_row)
                if not chosen:
                    return
                files = [self.files[k] for k in chosen]
                dataset = self._dataset
                if len(files) != len(self.files):
                    dataset = ds.dataset(
                        files,
                        schema=self._dataset.schema,
                        format="parquet",
                        partitioning=self._partitioning,
                        partition_base_dir=self._base_dir,
                    )
                iterator = dataset.to_batches(
                    columns=columns,
                    batch_size=batch_size,
                    batch_readahead=2,
                    fragment_readahead=1,
                    fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
                )
                offset = first
            for batch in iterator:
                yield offset, _cast_ids(batch, self.id_types, self.path)
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{self.path}: cannot read Parquet input ({_arrow_message(exc)})"
            ) from None


def _csv_header(path: str) -> list[str]:
    try:
        with pa.input_stream(path, compression="detect") as stream:
            head = stream.read(1 << 16)
    except (pa.ArrowException, OSError):
        return []
    first = head.decode("utf-8", "replace").splitlines()[:1]
    return next(csv.reader(io.StringIO(first[0])), []) if first else []


def _csv_error(path: str, exc: BaseException, names: list[str], id_types) -> DataError:
    message = _arrow_message(exc)
    match = re.search(r"column #(\d+)", message)
    if match and "conversion error" in message:
        index = int(match.group(1))
        name = names[index] if index < len(names) else f"#{index}"
        value = re.search(r"invalid value (.*)$", message)
        shown = value.group(1) if value else "?"
        if name in id_types and pa.types.is_integer(id_types[name]):
            return DataError(
                f"{path}: column {name!r} holds non-integer id {shown} but this bundle was trained "
                "with integer ids; fix the input or pass the right --user-col/--item-col"
            )
        return DataError(f"{path}: column {name!r}: cannot parse value {shown} ({message})")
    if "Expected" in message and "columns" in message:
        return DataError(
            f"{path}: ragged CSV row ({message}); every row needs the header's columns"
        )
    return DataError(f"{path}: cannot read CSV ({message})")


def _open_csv(path: str, id_types: dict[str, pa.DataType]):
    try:
        if os.path.getsize(path) == 0:
            raise DataError(f"{path}: input file is empty")
    except OSError as exc:
        raise DataError(f"{path}: cannot read input ({exc.strerror})") from None
    names = _csv_header(path)
    convert = pacsv.ConvertOptions(column_types=dict(id_types), strings_can_be_null=False)
    parse = pacsv.ParseOptions(delimiter="\t" if ".tsv" in path.lower() else ",")
    try:
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_SIZE, use_threads=True),
            parse_options=parse,
            convert_options=convert,
        )
    except (pa.ArrowException, OSError) as exc:
        if "Empty CSV" in str(exc):
            raise DataError(f"{path}: input file is empty (no header row)") from None
        raise _csv_error(path, exc, names, id_types) from None


def _cast_ids(batch: pa.RecordBatch, id_types, where: str) -> pa.RecordBatch:
    for name, typ in id_types.items():
        index = batch.schema.get_field_index(name)
        if index < 0 or batch.column(index).type == typ:
            continue
        column = batch.column(index)
        try:
            if pa.types.is_floating(column.type):
                continue  # the encoder checks for integral values and names the bad one
            batch = batch.set_column(index, name, column.cast(typ))
        except pa.ArrowException as exc:
            raise DataError(f"{where}: column {name!r}: {_arrow_message(exc)}") from None
    return batch


def _check_id_field(path: str, schema: pa.Schema, name: str, typ: pa.DataType, role: str) -> None:
    index = schema.get_field_index(name)
    if index < 0:
        raise DataError(
            f"{path}: no {role} id column {name!r} (columns: {', '.join(schema.names)}); "
            f"pass --{role}-col"
        )
    have = schema.field(index).type
    if pa.types.is_integer(typ) and (pa.types.is_string(have) or pa.types.is_large_string(have)):
        raise DataError(
            f"{path}: {role} id column {name!r} holds strings but this bundle was trained with "
            "integer ids; pass integer ids (or the right --user-col/--item-col)"
        )
    if not (
        pa.types.is_integer(have)
        or pa.types.is_floating(have)
        or pa.types.is_string(have)
        or pa.types.is_large_string(have)
        or pa.types.is_dictionary(have)
        or pa.types.is_null(have)
    ):
        raise DataError(f"{path}: {role} id column {name!r} has unsupported type {have}")


def expand_input(path: str | os.PathLike) -> tuple[str, list[str]]:
    """Resolve an input argument into ``(kind, files)``; raise :class:`DataError` if none."""
    text = os.fspath(path)
    if glob.has_magic(text):
        files = sorted(f for f in glob.glob(text, recursive=True) if os.path.isfile(f))
        if not files:
            raise DataError(f"{text}: no input files match this pattern")
    elif os.path.isdir(text):
        files = sorted(
            str(p)
            for p in Path(text).rglob("*")
            if p.is_file()
            and not any(part.startswith(_IGNORED_PREFIXES) for part in p.relative_to(text).parts)
        )
        if not files:
            raise DataError(f"{text}: input directory holds no data files")
    elif os.path.isfile(text):
        files = [text]
    else:
        raise DataError(f"{text}: input not found")
    csv_files = [f for f in files if _is_csv(f)]
    if csv_files and len(csv_files) != len(files):
        raise DataError(f"{text}: mixes CSV and other files; point at one kind")
    if csv_files:
        return "csv", files
    if os.path.isdir(text):
        parquet = [f for f in files if f.lower().endswith(PARQUET_SUFFIXES)]
        if not parquet:
            raise DataError(f"{text}: input directory holds no .parquet or .csv files")
        files = parquet
    return "parquet", files


def open_input(
    path: str | os.PathLike,
    *,
    user_col: str,
    item_col: str,
    user_type: pa.DataType,
    item_type: pa.DataType | None = None,
) -> InputSource:
    """Open an input for streaming and check its id columns against the bundle's id dtype.

    Parameters
    ----------
    path : path-like or str
        A CSV (``.csv``, ``.csv.gz``), a Parquet file, a directory of Parquet files (hive
        partitions are read as columns) or a glob.
    user_col, item_col : str
        The id columns.
    user_type, item_type : pyarrow.DataType
        ``int64`` or ``string``: ids are read as this type (``item_type`` defaults to
        ``user_type``).

    Raises
    ------
    DataError
        Missing, empty, unreadable input, missing id columns, ids of the wrong type.
    """
    text = os.fspath(path)
    kind, files = expand_input(text)
    item_type = item_type or user_type
    id_types = {user_col: user_type, item_col: item_type}
    if kind == "csv":
        reader = _open_csv(files[0], id_types)
        schema = reader.schema
        del reader
        for role, name in (("user", user_col), ("item", item_col)):
            _check_id_field(files[0], schema, name, id_types[name], role)
        return InputSource(text, "csv", files, schema, None, id_types)

    for file in files:
        try:
            if os.path.getsize(file) == 0:
                raise DataError(f"{file}: input file is empty")
        except OSError as exc:
            raise DataError(f"{file}: cannot read input ({exc.strerror})") from None
    try:
        if len(files) == 1 and not os.path.isdir(text):
            pfile = pq.ParquetFile(files[0])
            schema = pfile.schema_arrow
            total = pfile.metadata.num_rows
            file_rows = [total]
            dataset = base = None
        else:
            base = text if os.path.isdir(text) else None
            dataset = ds.dataset(
                files,
                format="parquet",
                partitioning="hive" if base else None,
                partition_base_dir=base,
            )
            schema = dataset.schema
            file_rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
            total = sum(file_rows)
    except DataError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{text}: cannot read Parquet input ({_arrow_message(exc)}); "
            "is it truncated or not Parquet?"
        ) from None
    for role, name in (("user", user_col), ("item", item_col)):
        _check_id_field(text, schema, name, id_types[name], role)
    # Read the id columns as the bundle's id type (int32 -> int64, ints -> strings...).
    fields = [
        pa.field(f.name, id_types[f.name])
        if f.name in id_types and not pa.types.is_floating(f.type)
        else f
        for f in schema
    ]
    schema = pa.schema(fields)
    return InputSource(
        text,
        "parquet",
        files,
        schema,
        total,
        id_types,
        dataset,
        file_rows,
        "hive" if base else None,
        base,
    )


def _pieces_from(sizes, start_row: int) -> tuple[list[int], int | None]:
    """Indices of the consecutive pieces (row groups, files) holding rows at or after
    ``start_row``, and the input row where the first of them starts."""
    chosen, offset, first = [], 0, None
    for k, rows in enumerate(sizes):
        if offset + rows > start_row:
            chosen.append(k)
            first = offset if first is None else first
        offset += rows
    return chosen, first
