"""Option checks shared by score, recommend, evaluate and the engines (torch-free).

Every count-like option (``--top-k``, ``--threads``, ``--part-rows``, ...) is checked here, so
each gets the same one-line :class:`~recmodels.errors.ConfigError`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def positive_int(name: str, value, default: int | None = None) -> int | None:
    """``value`` as a positive int, ``default`` when it is None, or one line naming ``name``.

    Parameters
    ----------
    name : str
        The option as the user typed it, e.g. ``"--top-k"``.
    value : int or None
        Booleans, floats with a fraction and values below 1 are refused.
    default : int, optional
        Returned (unchecked) when ``value`` is None.

    Raises
    ------
    ConfigError
        ``"--top-k must be a positive integer, got 0"``.
    """
    if value is None:
        return default
    integral = isinstance(value, int | np.integer) or (isinstance(value, float | np.floating)
                                                      and float(value).is_integer())
    if isinstance(value, bool | np.bool_) or not integral or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
