"""The few exception types recmodels raises on purpose.

Every error a user can cause (bad data, bad options, a corrupt bundle) is a
:class:`RecmodelsError`. The CLI prints ``str(error)`` as one line and exits
non-zero; library callers can catch the specific subclass. Messages name the
file, row or column at fault and say what to do.
"""

from __future__ import annotations


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` chars.

    Library and OS exceptions are often multi-line; user-facing messages quote only this.
    """
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def row_label(position: int) -> str:
    """How every message names a row: the 1-based data row, the header not counted.

    ``position`` is the 0-based position of the row among the data rows (a DataFrame's
    ``iloc``, an Arrow table's row), so ``row_label(0)`` is ``"data row 1"`` (in a CSV, the
    line after the header).
    """
    return f"data row {int(position) + 1}"


class RecmodelsError(Exception):
    """Base class for every user-facing recmodels error."""


class DataError(RecmodelsError, ValueError):
    """Input data is missing, unreadable or invalid (file, row or column named)."""


class ConfigError(RecmodelsError, ValueError):
    """An option or configuration value is invalid or inconsistent."""


class RunDirError(RecmodelsError):
    """A run directory is missing, incomplete, already exists, or cannot be written."""


class BundleError(RecmodelsError):
    """A scoring bundle is missing, incomplete, corrupt or of an unsupported version."""


class OutputError(RecmodelsError):
    """An output path exists (without --overwrite/--resume) or cannot be written."""


class DivergedError(RecmodelsError, ArithmeticError):
    """Training produced a NaN or infinite loss."""


class ParityError(RecmodelsError):
    """The exported graph does not reproduce the torch model within tolerance."""


class DeviceError(RecmodelsError):
    """A device that was explicitly asked for (e.g. ``cuda``) is not available."""


class NotFittedError(RecmodelsError, AttributeError):
    """An estimator was used before ``fit``."""


class EngineError(RecmodelsError):
    """A distributed engine (Spark, Dask) cannot be used: its cluster does not answer, or a job failed."""


class MissingEngineError(EngineError, ImportError):
    """An optional engine is not installed (the message names the extra to install)."""
