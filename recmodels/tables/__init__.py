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

from .files import (
    CSV_SUFFIXES,
    DEFAULT_DIALECT,
    IGNORED_PREFIXES,
    PARQUET_SUFFIXES,
    TEXT_SUFFIXES,
    CsvDialect,
    expand_input,
    header_looks_like_data,
    missing_columns_error,
)
from .read import TableSource, open_table, read_table

__all__ = ["CSV_SUFFIXES", "DEFAULT_DIALECT", "PARQUET_SUFFIXES", "TEXT_SUFFIXES", "CsvDialect",
           "TableSource", "expand_input", "header_looks_like_data", "missing_columns_error",
           "open_table", "read_table", "IGNORED_PREFIXES"]
