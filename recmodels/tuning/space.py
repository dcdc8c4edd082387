"""The search space of ``recmodels tune``: which config fields vary, and over what.

A space maps parameter names to one of:

- a range of floats ``{low = 0.01, high = 0.5, log = true}`` (``log`` samples on a log scale,
  ``step`` makes it discrete);
- a range of integers: the same with integer bounds (``{low = 1, high = 3}``);
- choices: a list ``[16, 32, 64]`` or ``{choices = [16, 32, 64]}``;
- a fixed value for every trial: a plain number, string or boolean (``epochs = 100``).

The names are the fields of :class:`~recmodels.training.TrainConfig` and the user fields of
:class:`~recmodels.models.ModelConfig` (read from the dataclasses, so a new field is tunable
at once), less those that do not change what is learned (:data:`NOT_TUNABLE`), plus
``dropout``: one dropout for every MLP layer. Nothing here imports torch or Optuna.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..models.config import ModelConfig
from ..training.config import TrainConfig

# TrainConfig fields that change how fast or where a run goes, not what it learns.
NOT_TUNABLE = ("device", "num_threads", "eval_batch_size", "seed")
# Parameters that only a model with an MLP tower has (skipped for "mf" trials).
MLP_ONLY = ("num_layers", "dropouts", "dropout")
EXTRA = {"dropout": "one dropout before every MLP layer (sets dropouts)"}
SPACE_SUFFIXES = (".toml", ".json")


def train_fields() -> tuple[str, ...]:
    """The tunable :class:`TrainConfig` fields."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in NOT_TUNABLE)


def model_fields() -> tuple[str, ...]:
    """The tunable :class:`ModelConfig` fields (and ``dropout``)."""
    return (*ModelConfig.user_fields(), *EXTRA)


def parameter_names() -> tuple[str, ...]:
    """Every name a search space may hold, training fields first."""
    return (*train_fields(), *model_fields())


@dataclass(frozen=True)
class Param:
    """One dimension of the search space.

    Parameters
    ----------
    name : str
        A :func:`parameter_names` entry.
    kind : {"float", "int", "choice", "fixed"}
    low, high : float or int, optional
        Inclusive bounds of a ``"float"``/``"int"`` range.
    log : bool
        Sample the range on a log scale.
    step : float or int, optional
        Discretisation step of a range.
    choices : tuple, optional
        The values of a ``"choice"`` (a list value is kept as a tuple).
    value : object, optional
        The value of a ``"fixed"`` parameter.
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None
    value: object = None

    def applies_to(self, kind: str) -> bool:
        """Whether a trial of model ``kind`` uses this parameter."""
        return not (kind == "mf" and self.name in MLP_ONLY)

    def suggest(self, trial):
        """Draw the value from an Optuna trial (``"fixed"``: the value itself)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            picked = trial.suggest_categorical(self.name, [_json_choice(c) for c in self.choices])
            return tuple(picked) if isinstance(picked, list) else picked
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log,
                                   step=None if self.step is None else float(self.step))

    def to_dict(self):
        """The space-file form of this parameter (:func:`parse_space` inverts it)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return {"choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}
        out = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _json_choice(value):
    # Optuna's categorical choices must be None, bool, int, float or str
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def decode_choice(param: Param, value):
    """An Optuna categorical value back in the space's terms (lists travel as JSON text)."""
    if param.kind == "choice" and isinstance(value, str) and any(
            isinstance(c, (list, tuple)) for c in param.choices):
        return tuple(json.loads(value))
    return value


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _parse_one(name: str, spec, where: str) -> Param:
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        if spec is None:
            raise ConfigError(f"{where}: {name}: a value, a list of choices or {{low, high}} is needed")
        return Param(name, "fixed", value=tuple(spec) if isinstance(spec, list) else spec)
    keys = set(spec)
    if "choices" in keys:
        extra = sorted(keys - {"choices"})
        if extra:
            raise ConfigError(f"{where}: {name}: choices cannot be combined with {', '.join(extra)}")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: {name}: choices must be a non-empty list")
        return Param(name, "choice", choices=tuple(tuple(c) if isinstance(c, list) else c
                                                   for c in choices))
    unknown = sorted(keys - {"low", "high", "log", "step"})
    if unknown or not {"low", "high"} <= keys:
        raise ConfigError(f"{where}: {name}: a range is {{low = ..., high = ...}} with optional log "
                          f"and step; got keys {', '.join(sorted(keys)) or 'none'}")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not (_is_number(low) and _is_number(high)) or low > high:
        raise ConfigError(f"{where}: {name}: low and high must be numbers with low <= high; "
                          f"got {low!r}, {high!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {name}: log must be true or false; got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: {name}: a log range needs low > 0; got {low!r}")
    if step is not None and not (_is_number(step) and step > 0):
        raise ConfigError(f"{where}: {name}: step must be a positive number; got {step!r}")
    if log and step is not None:
        raise ConfigError(f"{where}: {name}: step and log cannot be combined")
    ints = all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int))
    return Param(name, "int" if ints else "float", low=low, high=high, log=log, step=step)


def _check_value(name: str, value, where: str, what: str) -> None:
    """Build the config ``name`` belongs to with ``value`` (its own checks name the problem)."""
    try:
        if name in train_fields():
            TrainConfig(**{name: value})
        elif name == "dropout":
            ModelConfig("neumf", 1, 1, dropouts=(value,) * 3)
        else:
            ModelConfig("neumf", 1, 1, **{name: value})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {name}: {what} {value!r} is not valid ({exc})") from None
    except TypeError:
        raise ConfigError(f"{where}: {name}: {what} {value!r} is not valid") from None


def parse_space(spec: dict, where: str = "search space") -> dict[str, Param]:
    """Check a search space given as a dict (a parsed TOML/JSON file) and return its params.

    Parameters
    ----------
    spec : dict
        ``{name: range | choices | value}`` (see the module docstring).
    where : str
        Named in messages (the file).

    Returns
    -------
    dict of str to Param

    Raises
    ------
    ConfigError
        An unknown name (the message lists the valid ones), a malformed entry, or a value a
        config would refuse (a bound or a choice is tried).

    Examples
    --------
    >>> sorted(parse_space({"l2": {"low": 0.01, "high": 0.1, "log": True}, "epochs": 5}))
    ['epochs', 'l2']
    """
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{where}: the search space is empty; give at least one parameter "
                          f"(one of {', '.join(parameter_names())})")
    names = parameter_names()
    spec = {str(k).replace("-", "_"): v for k, v in spec.items()}
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(unknown)}; the parameters are "
                          f"{', '.join(names)}")
    if "dropout" in spec and "dropouts" in spec:
        raise ConfigError(f"{where}: give dropout or dropouts, not both")
    params = {}
    for name in names:  # a stable order: the dataclasses'
        if name not in spec:
            continue
        param = _parse_one(name, spec[name], where)
        if param.kind == "fixed":
            _check_value(name, param.value, where, "value")
        elif param.kind == "choice":
            for choice in param.choices:
                _check_value(name, choice, where, "choice")
        else:
            for bound in (param.low, param.high):
                _check_value(name, bound, where, "bound")
        params[name] = param
    return params


def read_space(path: str | os.PathLike) -> dict[str, Param]:
    """Read a search space from a ``.toml`` or ``.json`` file (see :func:`parse_space`).

    Raises
    ------
    ConfigError
        The file is missing, unreadable, of another type, or holds an invalid space.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SPACE_SUFFIXES:
        raise ConfigError(f"{path}: a search space is a .toml or .json file; got {suffix or 'no suffix'!r}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the search space ({exc.strerror or exc})") from None
    try:
        if suffix == ".toml":
            import tomllib

            spec = tomllib.loads(raw.decode("utf-8"))
        else:
            spec = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if suffix == ".toml" else "JSON"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: invalid {kind} ({first})") from None
    return parse_space(spec, str(path))


def default_space(kinds, optimizer: str = "rowwise-adagrad") -> dict[str, Param]:
    """The search space used when none is given.

    Learning rate(s), L2 and its frequency exponent, the embedding width and the weight
    averaging (``average_decay``) for every model;
    the dense learning rate and one dropout for the models with an MLP tower. With an
    optimizer other than row-wise Adagrad, ``lr`` drives every layer and the row-wise-only
    fields are left out. The batch size is left to ``TrainConfig.batch_size`` (by default
    scaled to the data); add ``batch_size = [...]`` to a space file to search it.

    Parameters
    ----------
    kinds : iterable of str
        The model kinds tuned.
    optimizer : str
        ``TrainConfig.optimizer`` of the trials.

    Returns
    -------
    dict of str to Param
    """
    kinds = tuple(kinds)
    spec: dict = {
        "l2": {"low": 0.005, "high": 0.2, "log": True},
        "embedding_dim": [16, 32, 64],
    }
    if optimizer == "rowwise-adagrad":
        spec["embedding_lr"] = {"low": 0.02, "high": 0.5, "log": True}
        spec["l2_frequency_exponent"] = {"low": 0.0, "high": 1.0}
        if any(k != "mf" for k in kinds):
            spec["lr"] = {"low": 3e-4, "high": 3e-3, "log": True}
    else:
        spec["lr"] = {"low": 1e-4, "high": 1e-2, "log": True}
    if any(k != "mf" for k in kinds):
        spec["dropout"] = {"low": 0.0, "high": 0.5}
    if "average_decay" in train_fields():  # weight averaging over epochs
        spec["average_decay"] = {"low": 0.0, "high": 0.9}
    return parse_space(spec, "default search space")


def space_to_dict(params: dict[str, Param]) -> dict:
    """The space as a JSON-ready dict (what ``tune.json`` records)."""
    return {name: param.to_dict() for name, param in params.items()}


__all__ = ["MLP_ONLY", "NOT_TUNABLE", "Param", "decode_choice", "default_space", "model_fields",
           "parameter_names", "parse_space", "read_space", "space_to_dict", "train_fields"]
