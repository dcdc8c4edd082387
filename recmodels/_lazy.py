"""Names a package offers but imports on first use (PEP 562), so importing the package stays light.

A package lists what it offers and where each name is defined, then takes its module
``__getattr__`` and ``__dir__`` from :func:`lazy_exports`::

    _EXPORTS = {"Bundle": ".load", "Manifest": ".manifest"}
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)

``from package import Bundle`` then imports ``package.load`` at that moment, and ``import
package`` alone imports none of them. This module imports nothing of recmodels (floor 1).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(namespace: dict, exports: Mapping[str, str]) -> tuple[Callable, Callable]:
    """The module ``__getattr__`` and ``__dir__`` of a package that offers ``exports`` lazily.

    Parameters
    ----------
    namespace : dict
        The package's ``globals()``. A name, once imported, is stored there, so later look-ups
        are plain attribute reads.
    exports : mapping of str to str
        Name -> the module that defines it: absolute (``"recmodels.bundle"``) or relative to the
        package (``".load"``, ``"..tables"``).

    Returns
    -------
    (__getattr__, __dir__) : (callable, callable)
        ``__getattr__(name)`` imports ``name``'s module and returns the name (an unknown name is
        an :class:`AttributeError`, as for any module); ``__dir__()`` lists the package's own
        names and ``exports``.
    """
    package = namespace["__name__"]

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
