"""What the readers accept: suffixes, the CSV dialect (separator, header row), inputs -> files,
and the column errors every reader gives."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError

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
