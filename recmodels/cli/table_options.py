"""``--sep``, ``--header/--no-header``, ``--columns``: how every command reads delimited text.

Defined once here: ``train`` and ``tune`` list them in their option table (:data:`SEP`,
:data:`HEADER`, :data:`COLUMNS` give the flags and help), and ``info``, ``score``, ``recommend``
and ``evaluate`` take them with the :func:`csv_options` decorator. :func:`dialect` turns the
three values into the one :class:`recmodels.tables.CsvDialect` every reader takes. Parquet
inputs ignore them. ``--missing-rating`` (:data:`MISSING_RATING`) is here too: ``train``,
``tune`` and ``info`` share it.
"""

from __future__ import annotations

import click

SEP = (("--sep",), "CHAR",
       "Field separator of delimited text: one character, or tab (also comma, semicolon, pipe, "
       "space). Given, it also reads .data/.dat/.txt files (MovieLens' u.data) and a single file "
       "of any suffix as delimited text. Parquet ignores it.  [default: tab for .tsv, comma "
       "otherwise]")
HEADER = (("--header/--no-header",), None,
          "Whether delimited text starts with a header row naming the columns; --no-header needs "
          "--columns.  [default: --header]")
COLUMNS = (("--columns",), "NAME,NAME,...",
           "With --no-header: the names of the file's columns, in order (MovieLens' u.data: "
           "user_id,item_id,rating,timestamp).")
DEFAULTS = {"sep": None, "header": True, "columns": None}
"""The three options' defaults: :class:`recmodels.tables.CsvDialect`'s (a test checks it), stated
here because importing :mod:`recmodels.tables` loads pyarrow, which ``--help`` must not."""
MISSING_RATING = (("--missing-rating",), "VALUE",
                  "A rating value that means \"not rated\" (Goodreads' 0): those rows are dropped "
                  "before anything else and counted (log, metrics.json).")


class CommaList(click.ParamType):
    """Comma-separated values, each converted by :meth:`item`; a TOML file gives a list."""

    what = "values"
    allow_empty = False

    def split(self, value) -> list:
        if isinstance(value, (list, tuple)):
            return list(value)
        return [v.strip() for v in str(value).split(",")]

    def item(self, value):
        return value

    def convert(self, value, param, ctx):
        try:
            items = tuple(self.item(v) for v in self.split(value))
            if items or self.allow_empty:
                return items
        except (TypeError, ValueError):
            pass
        self.fail(f"{value!r} is not a comma-separated list of {self.what}", param, ctx)


class NameList(CommaList):
    """Comma-separated column names (``user_id,item_id,rating``); a TOML file gives a list."""

    name = "NAME,NAME,..."
    what = "column names"

    def item(self, value):
        if not isinstance(value, str) or not value:
            raise ValueError(value)
        return value


def _option(spec, name: str, **kwargs):
    flags, metavar, help_text = spec
    return click.option(*flags, name, metavar=metavar, help=help_text, **kwargs)


def csv_options(command):
    """A decorator adding ``--sep``, ``--header/--no-header`` and ``--columns`` to a click
    command (parameters ``sep``, ``header``, ``columns``; pass them to :func:`dialect`)."""
    command = _option(COLUMNS, "columns", type=NameList(), default=DEFAULTS["columns"])(command)
    command = _option(HEADER, "header", default=DEFAULTS["header"])(command)
    return _option(SEP, "sep", default=DEFAULTS["sep"])(command)


def missing_rating_option(command):
    """A decorator adding ``--missing-rating VALUE`` (parameter ``missing_rating``)."""
    return _option(MISSING_RATING, "missing_rating", type=float, default=None)(command)


def dialect(sep: str | None, header: bool, columns, *, engine: str = "local") -> object:
    """The :class:`recmodels.tables.CsvDialect` of the three options (a bad combination is a
    one-line :class:`~recmodels.errors.ConfigError`). ``engine``: the Dask and Spark workers
    read files themselves, comma separated with a header row only, so they refuse the others."""
    from ..errors import ConfigError
    from ..tables import DEFAULT_DIALECT, CsvDialect

    chosen = CsvDialect(sep=sep, header=header, columns=columns)
    if engine != "local" and chosen != DEFAULT_DIALECT:
        raise ConfigError(f"--sep / --no-header / --columns need --engine local (the {engine} workers "
                          "read CSV with a header row, comma or tab (.tsv) separated); convert the "
                          "input to Parquet or such a CSV")
    return chosen


__all__ = ["COLUMNS", "DEFAULTS", "HEADER", "MISSING_RATING", "SEP", "NameList", "csv_options", "dialect",
           "missing_rating_option"]
