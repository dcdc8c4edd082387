"""The one training set-up: input tables -> validated, split, encoded parts -> ``ModelConfig``.

:func:`build_setup` is the only place where interactions (files or DataFrames) become what a
run needs: the validated and split parts, the id encoders fitted on the training part, the
encoded parts, the pretrained item table aligned to the item index, the
:class:`~recmodels.models.ModelConfig`, and the ``data`` section of ``config.json``.
:func:`~recmodels.training.train_run` (so ``recmodels train``) and
:meth:`RatingModel.fit <recmodels.training.RatingModel.fit>` both call it. Nothing is
written here, so bad input fails before a run directory exists.

Importing this module needs neither torch nor scikit-learn (the CLI reads its defaults here).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data import Columns
from ..data.read import check_missing_rating
from ..data.settings import DataFields
from ..errors import ConfigError, DataError
from ..models.config import DEFAULT_KIND, ModelConfig
from ..tables import DEFAULT_DIALECT, CsvDialect

LogFn = Callable[..., None]


@dataclass(frozen=True)
class DataConfig(DataFields):
    """How the interactions are read, split and joined with the pretrained item table.

    Parameters
    ----------
    user_col, item_col, rating_col : str
        Column names of the user id, item id and rating.
    timestamp_col : str, optional
        Time column (needed by ``split="leave-last-out"``).
    rating_range : (float, float) or None
        Inclusive bounds of the ratings. ``None`` (default): the min and max of the
        training ratings, recorded in ``config.json`` and the bundle's manifest (scores are
        clipped to it). A given range rejects every rating outside it, in any part.
    duplicates : {"last", "first", "error"}
        Repeated (user, item) pairs: keep the last or first, or fail.
    split : {"random", "leave-last-out"}
        How one table (``data=``) is split into train/valid/test.
    fractions : (float, float, float)
        Train/valid/test fractions of a random split.
    embedding_fill : {"zeros", "mean"}
        Vector of the items the pretrained table lacks (hybrid).
    missing_rating : float or None
        A rating value that means "not rated" (Goodreads' 0): rows holding it are dropped
        from every part before the range check, counted in ``train.log``, ``config.json`` and
        ``metrics.json``. ``None`` (default): every row is a rating.
    csv : recmodels.tables.CsvDialect or dict, optional
        How delimited text inputs are read (``--sep``, ``--no-header``, ``--columns``);
        ``None`` (default): comma separated (tab for ``.tsv``) with a header row.

    Examples
    --------
    >>> DataConfig(item_col="book_id").columns.item
    'book_id'
    """

    # the fields and their defaults: DataFields (light, so the CLI's --help reads them)

    def __post_init__(self):
        for name in ("user_col", "item_col", "rating_col", "duplicates", "split", "embedding_fill"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string; got {value!r}")
        stamp = self.timestamp_col
        if stamp is not None and not (isinstance(stamp, str) and stamp):
            raise ConfigError(f"timestamp_col must be a column name or None; got {self.timestamp_col!r}")
        if self.rating_range is not None:
            object.__setattr__(self, "rating_range", _numbers("rating_range", self.rating_range, 2,
                                                              "(MIN, MAX)"))
        object.__setattr__(self, "fractions", _numbers("fractions", self.fractions, 3,
                                                       "(TRAIN, VALID, TEST)"))
        object.__setattr__(self, "missing_rating", check_missing_rating(self.missing_rating))
        csv = CsvDialect(**self.csv) if isinstance(self.csv, dict) else self.csv
        if csv is not None and not isinstance(csv, CsvDialect):
            raise ConfigError(f"csv must be a recmodels.tables.CsvDialect or None; got {self.csv!r}")
        object.__setattr__(self, "csv", None if csv == DEFAULT_DIALECT else csv)

    @property
    def dialect(self) -> CsvDialect:
        """How delimited text inputs are read (:attr:`csv`, or the default dialect)."""
        return self.csv or DEFAULT_DIALECT

    @property
    def columns(self) -> Columns:
        """The column names as :class:`recmodels.data.Columns`."""
        return Columns(user=self.user_col, item=self.item_col, rating=self.rating_col,
                       timestamp=self.timestamp_col)

    def replace(self, **changes) -> DataConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_run(cls, data: dict) -> DataConfig:
        """The settings a run's ``config.json`` ``data`` section records (defaults where silent)."""
        default = cls()
        split = data.get("split") or {}
        # Runs record the range they used; one read from the training ratings is marked so, and
        # comes back as None (read it again). Runs made before the range was inferred recorded
        # the given one, or None when the check was skipped.
        lo, hi = data.get("rating_min", 1.0), data.get("rating_max", 5.0)
        if data.get("rating_range_inferred"):
            lo = hi = None
        embeddings = data.get("item_embeddings") or {}
        return cls(
            user_col=data.get("user_col", default.user_col),
            item_col=data.get("item_col", default.item_col),
            rating_col=data.get("rating_col", default.rating_col),
            timestamp_col=data.get("timestamp_col", default.timestamp_col),
            rating_range=None if lo is None or hi is None else (lo, hi),
            duplicates=data.get("duplicates", default.duplicates),
            split=split.get("method", default.split),
            fractions=split.get("fractions") or default.fractions,
            embedding_fill=embeddings.get("fill", default.embedding_fill),
            missing_rating=data.get("missing_rating"),
            csv=data.get("csv"),
        )


def _numbers(name: str, value, n: int, shape: str) -> tuple:
    try:
        numbers = tuple(float(v) for v in value)
        if any(isinstance(v, bool) for v in value):
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {shape}: {n} numbers; got {value!r}") from None
    if len(numbers) != n or not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{name} must be {shape}: {n} finite numbers; got {value!r}")
    return numbers


@dataclass
class TrainingSetup:
    """Everything a run needs, validated and encoded (nothing written yet).

    Attributes
    ----------
    model_config : ModelConfig
        Shape options plus the sizes, pretrained width and global mean taken from the data.
    train : EncodedRatings
    valid, test : EncodedRatings or None
        ``None`` when that part was not given (:meth:`RatingModel.fit` without ``valid_df``).
    user_encoder, item_encoder : IdEncoder
        Fitted on the training part.
    pretrained : ndarray of shape (n_items, pretrained_dim), or None
        The aligned pretrained item table (hybrid only).
    stats : dict
        :func:`recmodels.data.describe` of all the rows (``metrics.json["data"]``).
    data_section : dict
        ``config.json["data"]``.
    """

    model_config: ModelConfig
    train: object
    valid: object | None
    test: object | None
    user_encoder: object
    item_encoder: object
    pretrained: np.ndarray | None
    stats: dict
    data_section: dict


def training_rating_range(ratings, given: tuple[float, float] | None
                          ) -> tuple[tuple[float, float], bool]:
    """The rating range of a run: ``given``, or the min and max of the training ``ratings``.

    Parameters
    ----------
    ratings : array-like of float
        The training ratings (already checked against ``given`` when it is set).
    given : (float, float) or None
        ``DataConfig.rating_range``.

    Returns
    -------
    ((float, float), bool)
        The range and whether it was read from the data (``given`` is ``None``).

    Examples
    --------
    >>> training_rating_range([0.5, 3.0, 4.5], None)
    ((0.5, 4.5), True)
    >>> training_rating_range([2.0, 3.0], (1, 5))
    ((1.0, 5.0), False)
    """
    if given is not None:
        return (float(given[0]), float(given[1])), False
    values = np.asarray(ratings, dtype=np.float64)
    if values.size == 0:
        raise DataError("no training ratings to read the rating range from; give more data")
    return (float(values.min()), float(values.max())), True


def distinct_pairs(user_index, item_index, n_items: int) -> int:
    """How many distinct (user, item) pairs the encoded rows hold (``ModelConfig.rated_pairs``)."""
    keys = np.asarray(user_index, dtype=np.int64) * int(n_items) + np.asarray(item_index, dtype=np.int64)
    return int(np.unique(keys).size)


def source_name(source) -> str:
    """How a data source is named in messages and ``config.json``."""
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def check_model_options(options: dict | None) -> dict:
    """``options`` as a dict of :meth:`ModelConfig.user_fields`; any other key is a ConfigError."""
    options = dict(options or {})
    allowed = ModelConfig.user_fields()
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown model option(s) {', '.join(unknown)}; "
                          f"the model options are {', '.join(allowed)}")
    return options


def build_setup(*, data=None, train=None, valid=None, test=None, model: str = DEFAULT_KIND,
                model_options: dict | None = None, data_config: DataConfig | None = None,
                item_embeddings=None, seed: int = 0, log: LogFn | None = None) -> TrainingSetup:
    """Read, validate, split and encode the input, align the pretrained table, build the config.

    Parameters
    ----------
    data : path-like or DataFrame, optional
        One interaction table, split by ``data_config.split`` / ``fractions`` with ``seed``.
    train, valid, test : path-like or DataFrame, optional
        Parts already split (instead of ``data``); ``valid`` and ``test`` may be left out.
    model : {"mf", "neumf", "hybrid"}
    model_options : dict, optional
        :meth:`ModelConfig.user_fields` (``embedding_dim``, ``num_layers``, ``dropouts``,
        ``init_std``, ``use_bias``); the rest of the config comes from the data.
    data_config : DataConfig, optional
    item_embeddings : path-like or DataFrame, optional
        The pretrained item table (hybrid only); its id column is ``data_config.item_col``.
    seed : int
        Seed of the split.
    log : callable, optional
        Receives the statistics block and one line per notable event.

    Returns
    -------
    TrainingSetup

    Raises
    ------
    DataError
        Bad files, columns or values; a part with no rows whose user and item are in the
        training part; a pretrained table that matches no training item.
    ConfigError
        Inconsistent options (``data`` with ``train``, hybrid without a table, unknown model
        option, ...).
    """
    from .. import data as D
    from ..embeddings import align_item_embeddings, read_item_embeddings
    from ..metrics import rating_step

    log = log or (lambda line, show=True: None)
    data_config = data_config or DataConfig()
    options = check_model_options(model_options)
    columns = data_config.columns
    if data is not None and any(x is not None for x in (train, valid, test)):
        raise ConfigError("give either --data or --train/--valid/--test, not both")
    if model == "hybrid" and item_embeddings is None:
        raise ConfigError("model 'hybrid' needs the pretrained item table: --item-embeddings FILE "
                          "(item_embeddings= in Python)")
    if model != "hybrid" and item_embeddings is not None:
        raise ConfigError(f"--item-embeddings (item_embeddings=) is only used by model 'hybrid', "
                          f"not {model!r}")
    ModelConfig(model, 1, 1, pretrained_dim=1 if model == "hybrid" else 0, **options)  # fail early

    read = dict(rating_range=data_config.rating_range, duplicates=data_config.duplicates,
                missing_rating=data_config.missing_rating, dialect=data_config.dialect)
    if data is not None:
        frame = D.read_interactions(data, columns, **read)
        parts = D.split_interactions(frame, method=data_config.split, fractions=data_config.fractions,
                                     seed=seed, columns=columns)
        split_info = parts.to_dict()
        frames = {"train": parts.train, "valid": parts.valid, "test": parts.test}
        sources = [source_name(data)]
        all_rows = frame
    elif train is not None:
        given = {"train": train, "valid": valid, "test": test}
        frames = {name: None if src is None else D.read_interactions(src, columns, **read)
                  for name, src in given.items()}
        split_info = {"method": "given",
                      **{name: 0 if df is None else len(df) for name, df in frames.items()}}
        sources = [source_name(src) for src in given.values() if src is not None]
        import pandas as pd

        all_rows = pd.concat([df for df in frames.values() if df is not None], ignore_index=True)
        if data_config.missing_rating is not None:
            all_rows.attrs.update(missing_rating=data_config.missing_rating, missing_rating_dropped=sum(
                df.attrs["missing_rating_dropped"] for df in frames.values() if df is not None))
    else:
        raise ConfigError("no input: give --data FILE (or --train/--valid/--test)")
    stats = D.describe(all_rows, columns)
    log(D.format_stats(stats))
    for warning in D.rating_warnings(stats):
        log(f"warning: {warning}")

    user_encoder, item_encoder = D.fit_encoders(frames["train"], columns)
    encoded, reports = {}, {}
    for name, df in frames.items():
        encoded[name], reports[name] = (None, None) if df is None else D.encode(
            df, user_encoder, item_encoder, columns)
    if len(encoded["train"]) < 2:
        raise DataError("too few rows: the training part has fewer than 2 rows; give more data")
    for name, label in (("valid", "validation"), ("test", "test")):
        enc, report = encoded[name], reports[name]
        if enc is None:
            continue
        dropped = report["rows"] - report["kept"]
        if dropped:
            log(f"{label}: dropped {dropped} of {report['rows']} rows whose user or item is not "
                "in the training part")
        if len(enc) == 0:
            raise DataError(f"too few rows: the {label} part has no rows with users and items "
                            "seen in training; give more data")

    global_mean = float(np.mean(encoded["train"].rating, dtype=np.float64))
    rating_range, inferred = training_rating_range(encoded["train"].rating, data_config.rating_range)
    if inferred:
        log(f"rating range [{rating_range[0]:g}, {rating_range[1]:g}] read from the training "
            "ratings (set --rating-range MIN MAX to fix it)")
    data_section = {
        **columns.to_dict(),
        "rating_min": rating_range[0],
        "rating_max": rating_range[1],
        "rating_range_inferred": inferred,
        # hit accuracy rounds to it (recorded in the bundle's manifest too)
        "rating_step": rating_step(all_rows[columns.rating], origin=rating_range[0]),
        "global_mean": global_mean,
        "sources": sources,
        "split": split_info,
        "duplicates": data_config.duplicates,
        "encode": {"valid": reports["valid"], "test": reports["test"]},
    }
    if data_config.missing_rating is not None:
        data_section["missing_rating"] = data_config.missing_rating
        data_section["missing_rating_dropped"] = stats["missing_rating_dropped"]
    if data_config.csv is not None:
        data_section["csv"] = data_config.csv.to_dict()
    pretrained = None
    if item_embeddings is not None:
        ids, vectors = read_item_embeddings(item_embeddings, id_col=columns.item)
        aligned = align_item_embeddings(ids, vectors, item_encoder, fill=data_config.embedding_fill)
        if aligned.n_matched == 0:
            raise DataError(f"{source_name(item_embeddings)}: no row matches an item of the "
                            f"training data (column {columns.item!r}); check the ids")
        log(aligned.summary())
        pretrained = aligned.matrix
        options["pretrained_dim"] = int(pretrained.shape[1])
        data_section["item_embeddings"] = {"source": source_name(item_embeddings), **aligned.to_dict()}
    model_config = ModelConfig(model, n_users=len(user_encoder), n_items=len(item_encoder),
                               global_mean=global_mean, **options)
    if model_config.implicit != "none":  # the length of N's buffers (models/implicit.py)
        train_part = encoded["train"]
        model_config = model_config.replace(rated_pairs=distinct_pairs(
            train_part.user_index, train_part.item_index, len(item_encoder)))
    return TrainingSetup(model_config, encoded["train"], encoded["valid"], encoded["test"],
                         user_encoder, item_encoder, pretrained, stats, data_section)


def run_settings(config: dict) -> dict[str, dict]:
    """What a run was made with, from its ``config.json``, by section and field.

    Returns
    -------
    dict
        ``{"model": {"kind", ModelConfig fields}, "train": {TrainConfig fields},
        "data": {DataConfig fields}, "csv": {CsvDialect fields}, "input": {"data", "train",
        "valid", "test", "item_embeddings"}}`` (the sources as recorded, ``None`` where unused).

    Raises
    ------
    ConfigError
        A section does not describe a valid configuration.
    """
    from .config import TrainConfig

    model = ModelConfig.from_dict(config["model"])
    data = config.get("data") or {}
    sources = list(data.get("sources") or [])
    parts = (data.get("split") or {}).get("method") == "given"
    inputs = {"data": None if parts or not sources else sources[0],
              "item_embeddings": (data.get("item_embeddings") or {}).get("source")}
    for i, part in enumerate(("train", "valid", "test")):
        inputs[part] = sources[i] if parts and i < len(sources) else None
    data_config = DataConfig.from_run(data)
    return {"model": {"kind": model.kind, **dataclasses.asdict(model)},
            "train": dataclasses.asdict(TrainConfig.from_dict(config.get("train") or {})),
            "data": dataclasses.asdict(data_config),
            "csv": data_config.dialect.to_dict(),
            "input": inputs}


__all__ = ["DataConfig", "TrainingSetup", "build_setup", "check_model_options", "run_settings",
           "source_name", "training_rating_range"]
