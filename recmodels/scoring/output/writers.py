"""Output writers: one file (temp name, renamed when complete) or a directory of part files.

Directory layout (``OUT/``)::

    _scoring.json          the job's settings; ``--resume`` refuses a directory written differently
    part-00000.parquet     input rows [0, part_rows) scored (minus skipped rows)
    _part-00000.json       sidecar: part's input range, rows written, file size (the commit record)
    ...
    _SUCCESS               written last, when every part is complete (as Spark does)

Each part is written under a temporary name; its sidecar is written (atomically) and then the
part is renamed into place, so a part file with a matching sidecar is always complete. Files
starting with ``_`` or ``.`` are ignored by Spark, pyarrow.dataset and pandas readers.

Both writers hold the output's lock (:mod:`.lock`) from construction until :meth:`commit`,
:meth:`abort` or :meth:`release`: a second run on the same output refuses in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ...errors import ConfigError, DataError, OutputError, first_line
from ...fileio import check_writable_parent, read_json, write_json
from .lock import OutputLock, output_lock

FORMATS = ("parquet", "csv")
SUCCESS_FILE = "_SUCCESS"
JOB_FILE = "_scoring.json"
_PART_RE = re.compile(r"^(?:_)?part-(\d{5,})\.(parquet|csv|json)$")
PARQUET_COMPRESSION = "snappy"


def _format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith(".csv"):
        return "csv"
    return None


def resolve_output(path: str | os.PathLike, fmt: str | None = None) -> tuple[str, str]:
    """Decide ``(mode, format)`` for an output path.

    A path with a file extension (``.parquet``, ``.csv``) is one file; a path without one, or an
    existing directory, is a directory of part files. ``fmt`` overrides the extension's format.
    """
    text = os.fspath(path)
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    by_ext = _format_of(text)
    if fmt is not None and by_ext is not None and fmt != by_ext and not os.path.isdir(text):
        raise ConfigError(
            f"{text}: --format {fmt} does not match the {Path(text).suffix} name; name the file "
            f".{fmt}, or drop --format"
        )
    if os.path.isdir(text) or (by_ext is None and Path(text).suffix == ""):
        return "dir", fmt or "parquet"
    if by_ext is None:
        if fmt is None:
            raise ConfigError(
                f"{text}: cannot tell the output format from the extension; use .parquet or .csv, "
                "pass --format, or give a path without an extension for a directory of parts"
            )
        return "file", fmt
    return "file", fmt or by_ext


def check_output_options(path, fmt: str | None, *, resume: bool, overwrite: bool) -> tuple[str, str]:
    """:func:`resolve_output` plus the ``--resume`` / ``--overwrite`` rules of every writing command."""
    mode, fmt = resolve_output(path, fmt)
    if resume and mode != "dir":
        raise ConfigError("--resume needs a directory output (a path without an extension)")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    return mode, fmt


def check_existing(path, mode: str, *, resume: bool = False, overwrite: bool = False,
                   command: str = "score") -> None:
    """What an existing output ``path`` does not allow (one line each); nothing is created.

    ``mode`` is ``"file"`` or ``"dir"`` (:func:`resolve_output`). A directory holding only
    temporaries of killed runs counts as empty once the lock's holder has removed them.
    """
    path = Path(path)
    if mode == "file":
        if path.is_dir():
            raise OutputError(f"{path} is a directory; give a file path or drop the extension")
        if path.exists() and not overwrite:
            raise OutputError(f"{path} already exists; pass --overwrite to replace it")
        return
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is not a directory; choose another output")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if resume and not (path / JOB_FILE).is_file():
        raise OutputError(
            f"{path}: not a `recmodels {command}` output (no {JOB_FILE}); cannot --resume into it"
        )
    if not resume and not overwrite:
        raise OutputError(
            f"{path} already exists and is not empty; pass --resume to continue an "
            "interrupted run or --overwrite to replace it"
        )


@contextlib.contextmanager
def claim_output(path, fmt: str | None = None, *, resume: bool = False, overwrite: bool = False,
                 command: str = "score"):
    """Before the work: hold ``path``'s lock and refuse what its writer would refuse.

    The lock (:mod:`.lock`) is taken only when the output's directory exists (nothing is created
    here); the writer opened inside the block takes it again. Yields ``(mode, format)``.

    Examples
    --------
    >>> with claim_output("recs/", resume=True, command="recommend") as (mode, fmt):  # doctest: +SKIP
    ...     recommender.recommend_file("recs/", resume=True, job=job)
    """
    mode, fmt = check_output_options(path, fmt, resume=resume, overwrite=overwrite)
    parent = Path(os.path.abspath(os.fspath(path))).parent
    with output_lock(path) if parent.is_dir() else contextlib.nullcontext():
        check_existing(path, mode, resume=resume, overwrite=overwrite, command=command)
        yield mode, fmt


@contextlib.contextmanager
def cleanup_on_error(writer):
    """Run a write with ``writer`` (a :class:`FileOutput` or :class:`PartsOutput`) and clean up if it fails.

    Bad input data (:class:`DataError`) removes a directory this run created: nothing is left
    half-written. Any other failure (disk full, an interrupt) removes only the file in progress,
    so that complete parts stay for ``--resume``.
    """
    try:
        yield writer
    except BaseException as exc:
        if isinstance(exc, DataError) and writer.mode == "dir":
            writer.remove_all()
        else:
            writer.abort()
        raise


@contextlib.contextmanager
def _write_errors(final: Path):
    """Report a failed write (disk full, file too large, permissions) as one OutputError line."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        reason = getattr(exc, "strerror", None) or first_line(exc, 200)
        raise OutputError(f"{final}: cannot write output ({reason})") from None


class BatchFile:
    """A Parquet or CSV file written batch by batch; the writers' (and the engines' workers') one file.

    Parameters
    ----------
    path : Path
        Where the file is written (a temporary name: the caller renames it).
    fmt : {"parquet", "csv"}
    schema : pyarrow.Schema
    final : Path
        The name the file will have, for error messages (:class:`OutputError` lines).
    """

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, final: Path):
        self.path = path
        self.final = final
        self.rows = 0
        with _write_errors(final):
            if fmt == "parquet":
                self._writer = pq.ParquetWriter(
                    path,
                    schema,
                    compression=PARQUET_COMPRESSION,
                    use_dictionary=_dictionary_columns(schema),
                )
            else:
                self._writer = pacsv.CSVWriter(path, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            with _write_errors(self.final):
                self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        with _write_errors(self.final):
            self._writer.close()


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: not numbers. Scores are nearly all distinct, so their
    dictionary only overflows and falls back (~20% of the write time); hashing the pass-through
    integer id columns cost ~15% of end-to-end time for files ~20% smaller (docs/benchmarks.md).
    String ids and booleans keep the dictionary: there it pays."""
    return [f.name for f in schema if not (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))]


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FileOutput:
    """One output file, written under a temporary sibling name and renamed when complete."""

    mode = "file"

    def __init__(self, path, fmt: str, schema: pa.Schema, *, overwrite: bool = False):
        self.path = check_writable_parent(path)
        self.fmt = fmt
        self._lock = OutputLock(self.path).acquire()
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            check_existing(self.path, "file", overwrite=overwrite)
            self._file = BatchFile(self._tmp, fmt, schema, self.path)
        except BaseException:  # an interrupt may come after the file was created
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._lock.release()
            raise
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._file.write(batch)
        self.rows += batch.num_rows

    def commit(self) -> None:
        self._file.close()
        _fsync(self._tmp)
        with _write_errors(self.path):
            os.replace(self._tmp, self.path)
        self.release()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        self.release()

    def release(self) -> None:
        """Give the output's lock back (commit and abort do)."""
        self._lock.release()


class PartsOutput:
    """A directory of part files with deterministic boundaries, resumable.

    Parameters
    ----------
    path : path-like
        The output directory.
    fmt : {"parquet", "csv"}
    schema : pyarrow.Schema
    part_rows : int
        Input rows per part: part ``k`` holds input rows ``[k * part_rows, (k + 1) * part_rows)``.
    job : dict
        The settings that determine the output; stored in ``_scoring.json`` and compared on resume.
    resume, overwrite : bool
        An existing non-empty directory is refused unless one of them is given.
    command : str
        The command that writes the directory (``score``, ``recommend``), for messages.
    """

    mode = "dir"

    def __init__(
        self, path, fmt, schema, *, part_rows: int, job: dict, resume=False, overwrite=False,
        command: str = "score",
    ):
        self.path = Path(path)
        self.command = command
        self.fmt = fmt
        self.schema = schema
        self.part_rows = int(part_rows)
        self.job = {
            **job,
            "format": fmt,
            "part_rows": self.part_rows,
            "schema": _schema_text(schema),
        }
        self.created = False
        self.complete: dict[int, dict] = {}
        self._current: BatchFile | None = None
        self._part = None
        self.rows = 0
        if self.path.exists() and not self.path.is_dir():  # before creating anything
            raise OutputError(f"{self.path} exists and is not a directory; choose another output")
        check_writable_parent(self.path)
        self._lock = OutputLock(self.path).acquire()  # removes what killed runs left here
        try:
            self._open(resume, overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, resume: bool, overwrite: bool) -> None:
        check_existing(self.path, "dir", resume=resume, overwrite=overwrite, command=self.command)
        existed = self.path.exists()
        existing = list(self.path.iterdir()) if existed else []
        if existing and resume:
            self._load_resume_state()
        elif existing and overwrite:
            self._clear()
        self.created = not existed
        try:
            self.path.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"{self.path}: cannot create output directory ({exc.strerror})"
            ) from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise OutputError(f"{self.path}: output directory is not writable")
        with contextlib.suppress(FileNotFoundError):
            (self.path / SUCCESS_FILE).unlink()
        with _write_errors(self.path / JOB_FILE):
            write_json(self.path / JOB_FILE, self.job)

    # -- names ---------------------------------------------------------------------------------
    def part_path(self, k: int) -> Path:
        return self.path / f"part-{k:05d}.{self.fmt}"

    def sidecar_path(self, k: int) -> Path:
        return self.path / f"_part-{k:05d}.json"

    # -- resume ---------------------------------------------------------------------------------
    def _load_resume_state(self) -> None:
        job_path = self.path / JOB_FILE
        if not job_path.is_file():
            raise OutputError(
                f"{self.path}: not a `recmodels {self.command}` output (no {JOB_FILE}); "
                "cannot --resume into it"
            )
        try:
            previous = read_json(job_path)
        except (OSError, ValueError) as exc:
            raise OutputError(f"{job_path}: unreadable ({exc}); use --overwrite") from None
        diffs = sorted(
            k for k in set(previous) | set(self.job) if previous.get(k) != self.job.get(k)
        )
        if diffs:
            raise OutputError(
                f"{self.path} was written with different settings ({', '.join(diffs)}); "
                "rerun with the same options or use --overwrite"
            )
        for entry in self.path.iterdir():
            name = entry.name
            if name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()
                continue
            match = _PART_RE.match(name)
            if not match or not name.startswith("_"):
                continue
            k = int(match.group(1))
            meta = self._verified(k)
            if meta is not None:
                self.complete[k] = meta

    def _verified(self, k: int) -> dict | None:
        """The sidecar of part ``k`` when the part is complete and matches it, else None."""
        try:
            meta = read_json(self.sidecar_path(k))
            part = self.part_path(k)
            if meta.get("part") != k or meta.get("input_start") != k * self.part_rows:
                return None
            if not part.is_file() or part.stat().st_size != meta.get("bytes"):
                return None
            if self.fmt == "parquet" and pq.ParquetFile(part).metadata.num_rows != meta.get("rows"):
                return None
            return meta
        except (OSError, ValueError, pa.ArrowException):
            return None

    def _clear(self) -> None:
        for entry in self.path.iterdir():
            if (
                entry.name in (SUCCESS_FILE, JOB_FILE)
                or _PART_RE.match(entry.name)
                or (entry.name.startswith(".part-") and entry.name.endswith(".tmp"))
            ):
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()

    def is_complete(self, k: int) -> bool:
        return k in self.complete

    # -- writing --------------------------------------------------------------------------------
    def begin_part(self, k: int) -> None:
        self._part = k
        self._tmp = self.path / f".part-{k:05d}.{self.fmt}.{os.getpid()}.tmp"
        self._current = BatchFile(self._tmp, self.fmt, self.schema, self.part_path(k))

    def write(self, batch: pa.RecordBatch) -> None:
        self._current.write(batch)
        self.rows += batch.num_rows

    def end_part(self, input_rows: int, *, unknown_rows: int = 0) -> None:
        """Close the current part: fsync, sidecar (the commit record), rename into place.

        ``unknown_rows`` is recorded so that a resumed run's unknown-id guard counts this part.
        """
        k = self._part
        self._current.close()
        _fsync(self._tmp)
        meta = {
            "part": k,
            "file": self.part_path(k).name,
            "input_start": k * self.part_rows,
            "input_rows": int(input_rows),
            "rows": self._current.rows,
            "bytes": self._tmp.stat().st_size,
            "unknown_rows": int(unknown_rows),
        }
        # Sidecar first, then the part: a part file with a matching sidecar is complete.
        with _write_errors(self.part_path(k)):
            write_json(self.sidecar_path(k), meta)
            os.replace(self._tmp, self.part_path(k))
        self.complete[k] = meta
        self._current = None
        self._part = None

    def commit(self) -> None:
        with _write_errors(self.path / SUCCESS_FILE):
            (self.path / SUCCESS_FILE).write_text("")
        self.release()

    def _drop_current(self) -> None:
        if self._current is not None:
            with contextlib.suppress(Exception):
                self._current.close()
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._current = None

    def abort(self) -> None:
        """Remove the part in progress (complete parts stay for ``--resume``); release the lock."""
        self._drop_current()
        self.release()

    def remove_all(self) -> None:
        """Delete what this run wrote (used when the input itself turned out to be bad)."""
        self._drop_current()
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Give the output's lock back (commit, abort and remove_all do)."""
        self._lock.release()


def job_settings(bundle: str, input: str, *, unknown: str, clip: bool, user_col: str, item_col: str,
                 input_rows: int | None = None, engine: str | None = None) -> dict:
    """The settings of a ``recmodels score`` job that its directory output records in
    ``_scoring.json`` (:class:`PartsOutput` adds the format, part rows and schema); ``--resume``
    refuses a directory written with others.

    The one writer of them, for the local run and the engines: on a file input (``input``: its
    absolute path, ``input_rows`` its rows) both write the same settings and resume each other.
    ``engine`` is recorded for an engine's own frame (``input`` then says what it is).
    """
    settings = {"bundle": bundle, "input": input}
    if input_rows is not None:
        settings["input_rows"] = int(input_rows)
    settings.update(unknown=unknown, clip=bool(clip), user_col=user_col, item_col=item_col)
    if engine is not None:
        settings["engine"] = engine
    return settings


def _schema_text(schema: pa.Schema) -> list[str]:
    return [f"{f.name}:{f.type}" for f in schema]
