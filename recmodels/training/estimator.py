"""``RatingModel``: a scikit-learn style estimator over the same set-up, models and trainer."""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, NotFittedError
from ..models.config import DEFAULT_KIND, ModelConfig
from .config import TrainConfig
from .setup import DataConfig, build_setup

# Above this share of rows with an unseen user or item, predict() warns.
FALLBACK_WARNING_SHARE = 0.5
# The DataConfig fields that apply to the frames given to fit (no split: the caller splits).
_DATA_FIELDS = ("user_col", "item_col", "rating_col", "rating_range", "duplicates", "embedding_fill")


def _field_defaults(cls, names=None) -> dict:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return {name: fields[name].default for name in (names or fields)}


TRAIN_PARAMS = _field_defaults(TrainConfig)
MODEL_PARAMS = _field_defaults(ModelConfig, ModelConfig.user_fields())
DATA_PARAMS = _field_defaults(DataConfig, _DATA_FIELDS)
OTHER_PARAMS = {"item_embeddings": None, "progress": False}
# Every constructor keyword but ``model``, with its default (taken from the config dataclasses).
PARAMS = {**TRAIN_PARAMS, **MODEL_PARAMS, **DATA_PARAMS, **OTHER_PARAMS}


def _is_default(value, default) -> bool:
    if value is default:
        return True
    try:
        return bool(type(value) is type(default) and value == default)
    except (TypeError, ValueError):  # arrays, frames
        return False


def _short(value) -> str:
    return f"<{type(value).__name__}>" if isinstance(value, (pd.DataFrame, np.ndarray)) else repr(value)


class RatingModel:
    """Train and use a rating model from DataFrames, scikit-learn style.

    Constructor arguments are stored as given and validated in :meth:`fit`; learned
    attributes end in ``_``. The keywords are exactly the fields of the config dataclasses,
    with their defaults, so an estimator can reproduce any ``recmodels train`` run.

    Parameters
    ----------
    model : {"mf", "neumf", "hybrid"}
    epochs, batch_size, optimizer, lr, embedding_lr, l2, l2_frequency_exponent, l2_bias, \
patience, average_decay, seed, device, num_threads, eval_batch_size, precision, refit
        Every :class:`~recmodels.training.TrainConfig` field.
    embedding_dim, num_layers, dropouts, init_std, use_bias
        The :class:`~recmodels.models.ModelConfig` fields a user sets (the rest come from
        the data); ``dropouts=None`` is the default for ``num_layers``.
    user_col, item_col, rating_col, rating_range, duplicates, embedding_fill
        :class:`~recmodels.training.setup.DataConfig` fields: the columns of the frames given
        to :meth:`fit` and :meth:`predict`, the allowed ratings, repeated pairs, and the
        vector of items the pretrained table lacks.
    item_embeddings : DataFrame or path, optional
        Hybrid only: the pretrained item table (column ``item_col`` plus numeric columns).
    progress : bool
        Show a tqdm bar per epoch (on stderr).

    Attributes
    ----------
    model_ : nn.Module
        The best-validation network, in eval mode, on the CPU.
    config_ : ModelConfig
    train_config_ : TrainConfig
    user_encoder_, item_encoder_ : IdEncoder
    history_ : list of dict
        Per-epoch ``train_mse``, ``train_rmse``, ``valid_mse``, ``valid_rmse``, ...
    best_epoch_ : int
    global_mean_ : float
    data_section_ : dict
        What :meth:`save` writes as ``config.json["data"]`` (as ``recmodels train`` does).
    metrics_ : dict
        What :meth:`save` writes as ``metrics.json`` (``valid`` metrics when ``valid_df``
        was given; ``test`` is ``None``).
    n_fallback_ : int
        Rows of the last :meth:`predict` call whose user or item was not seen in training.

    Examples
    --------
    >>> from recmodels.datasets import make_ratings
    >>> data = make_ratings(200, 100, 4000, seed=0).ratings
    >>> est = RatingModel("mf", epochs=2, batch_size=512).fit(data)
    >>> est.predict(data.head(3)).shape
    (3,)
    """

    def __init__(self, model: str = DEFAULT_KIND, **params):
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise TypeError(f"RatingModel() got unexpected keyword argument(s) {', '.join(unknown)}; "
                            f"it takes {', '.join(PARAMS)}")
        self.model = model
        for name, default in PARAMS.items():
            setattr(self, name, params.get(name, default))

    _estimator_type = "regressor"  # what scikit-learn < 1.6 reads instead of __sklearn_tags__

    def __sklearn_tags__(self):
        """scikit-learn's tags (>= 1.6): a regressor whose target is a column of the DataFrame."""
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=False),
                    regressor_tags=RegressorTags(), no_validation=True,
                    input_tags=InputTags(categorical=True, string=True))

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments (scikit-learn's ``get_params``)."""
        return {"model": self.model, **{name: getattr(self, name) for name in PARAMS}}

    def set_params(self, **params) -> RatingModel:
        """Change constructor arguments (scikit-learn's ``set_params``); returns ``self``."""
        unknown = sorted(set(params) - set(PARAMS) - {"model"})
        if unknown:
            raise ValueError(f"invalid parameter(s) {', '.join(unknown)} for RatingModel")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = [f"{k}={_short(v)}" for k, v in self.get_params().items()
                   if k != "model" and not _is_default(v, PARAMS[k])]
        return f"RatingModel({self.model!r}{''.join(', ' + c for c in changed)})"

    def _train_config(self) -> TrainConfig:
        return TrainConfig(**{name: getattr(self, name) for name in TRAIN_PARAMS})

    def _data_config(self) -> DataConfig:
        return DataConfig(**{name: getattr(self, name) for name in DATA_PARAMS})

    def fit(self, train_df: pd.DataFrame, valid_df: pd.DataFrame | None = None) -> RatingModel:
        """Train on ``train_df`` (early-stopping on ``valid_df`` when given).

        Parameters
        ----------
        train_df : DataFrame with the user, item and rating columns
        valid_df : DataFrame, optional
            Rows with users/items not in ``train_df`` are left out; if none is left, that is
            a :class:`~recmodels.errors.DataError` (as in ``recmodels train``).

        Returns
        -------
        self
        """
        import torch

        from .. import runs
        from ..devices import resolve_device
        from ..models import build_model
        from .pipeline import rating_metrics
        from .trainer import Trainer

        train_config = self._train_config()
        device = resolve_device(train_config.device)
        setup = build_setup(train=train_df, valid=valid_df, model=self.model,
                            model_options={name: getattr(self, name) for name in MODEL_PARAMS},
                            data_config=self._data_config(), item_embeddings=self.item_embeddings,
                            seed=train_config.seed)
        torch.manual_seed(train_config.seed)
        network = build_model(setup.model_config, pretrained=setup.pretrained)
        lines: list[str] = []
        trainer = Trainer(network, train_config, device, log=lines.append, progress=self.progress)
        trainer.fit(setup.train, setup.valid)
        network.load_state_dict(trainer.final_state_dict())
        network.eval()
        valid_metrics = rating_metrics(network, setup.valid, device, train_config.eval_batch_size)
        self.model_ = network.cpu()
        self.config_ = setup.model_config
        self.train_config_ = trainer.config  # batch_size resolved from the data
        self.user_encoder_, self.item_encoder_ = setup.user_encoder, setup.item_encoder
        self.history_ = trainer.state.history
        self.best_epoch_ = trainer.state.best_epoch
        self.global_mean_ = setup.model_config.global_mean
        self.data_section_ = setup.data_section
        self.metrics_ = runs.metrics_object(self.history_, self.best_epoch_, valid_metrics, None,
                                            setup.stats, **trainer.fit_reports)
        self._log_lines = lines
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this RatingModel is not fitted yet; call fit() first")

    def _check_columns(self, df, names: tuple[str, ...], what: str) -> None:
        available = [str(c) for c in getattr(df, "columns", [])]
        missing = [c for c in names if c not in available]
        if missing:
            raise DataError(
                f"{type(df).__name__}: missing {what} column(s) {', '.join(repr(c) for c in missing)}; "
                f"the columns are {', '.join(repr(c) for c in available[:20]) or 'none'}; name the "
                "right ones with RatingModel(user_col=..., item_col=..., rating_col=...)")

    def predict(self, df: pd.DataFrame, *, unknown: float | None = None) -> np.ndarray:
        """Predicted ratings for the (user, item) rows of ``df``.

        Rows whose user or item was not in the training data get a fallback; their count is
        :attr:`n_fallback_`, and a ``UserWarning`` says so when they are more than half of
        the rows (usually a split that leaves users or items out of training, or ids of
        another type).

        Parameters
        ----------
        df : DataFrame with the user and item columns
        unknown : float, optional
            The fallback (default: the training ratings' global mean).

        Returns
        -------
        ndarray of float32, shape (len(df),)

        Raises
        ------
        DataError
            ``df`` lacks the user or item column.
        """
        import torch

        from .trainer import predict_tensors

        self._check_fitted()
        self._check_columns(df, (self.user_col, self.item_col), "id")
        users = self.user_encoder_.transform(df[self.user_col], unknown="mask")
        items = self.item_encoder_.transform(df[self.item_col], unknown="mask")
        known = (users >= 0) & (items >= 0)
        fallback = self.global_mean_ if unknown is None else unknown
        out = np.full(len(df), fallback, np.float32)
        if known.any():
            pred = predict_tensors(self.model_, torch.from_numpy(users[known]),
                                   torch.from_numpy(items[known]))
            out[known] = pred.numpy()
        self.n_fallback_ = int(len(df) - known.sum())
        if len(df) and self.n_fallback_ / len(df) > FALLBACK_WARNING_SHARE:
            warnings.warn(f"{self.n_fallback_:,} of {len(df):,} rows have a user or item not seen in "
                          f"training and got the fallback {fallback:g}", UserWarning, stacklevel=2)
        return out

    def score(self, df: pd.DataFrame, y=None) -> float:
        """The *negative* RMSE of :meth:`predict` on ``df``: higher is better.

        scikit-learn's convention for ``score`` (its ``neg_root_mean_squared_error``), which
        ``GridSearchCV`` and ``cross_val_score`` maximise; ``-est.score(df)`` is the RMSE.

        Parameters
        ----------
        df : DataFrame with the user, item and rating columns
        y : None
            Ignored: the ratings are ``df``'s rating column (scikit-learn passes ``y=None``).

        Returns
        -------
        float
            ``-rmse``, at most 0.

        Examples
        --------
        >>> from recmodels.datasets import make_ratings
        >>> data = make_ratings(200, 100, 4000, seed=0).ratings
        >>> est = RatingModel("mf", epochs=2, batch_size=512).fit(data)
        >>> -est.score(data) < 1.5   # the RMSE
        True
        """
        from ..metrics import rmse

        self._check_fitted()
        self._check_columns(df, (self.user_col, self.item_col, self.rating_col), "rating")
        return -rmse(df[self.rating_col].to_numpy(), self.predict(df))

    def save(self, run_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a run directory that :func:`recmodels.runs.load_run` (and export) can read.

        The same layout and ``config.json`` / ``metrics.json`` keys as ``recmodels train``:
        ``config.json``, ``model.pt``, the id maps, ``metrics.json``, ``loss.png``,
        ``train.log`` and ``COMPLETE``; there is no ``split/`` or ``last.pt`` (an estimator's
        run cannot be resumed).
        """
        from .. import runs
        from ..fileio import write_json

        self._check_fitted()
        run_dir = runs.check_out_dir(run_dir, overwrite=overwrite)
        runs.prepare_run_dir(run_dir, overwrite=overwrite)
        write_json(run_dir / runs.CONFIG_FILE,
                   runs.run_config(self.config_, self.train_config_, self.data_section_))
        runs.save_torch({k: v.clone() for k, v in self.model_.state_dict().items()},
                        run_dir / runs.MODEL_FILE)
        self.user_encoder_.save(run_dir / runs.USER_IDS_FILE)
        self.item_encoder_.save(run_dir / runs.ITEM_IDS_FILE)
        runs.write_metrics(run_dir, self.metrics_)
        if self.history_:
            runs.plot_loss(self.history_, run_dir / runs.LOSS_PLOT_FILE)
        runs.write_text(run_dir / runs.LOG_FILE, "".join(f"{line}\n" for line in self._log_lines))
        runs.write_text(run_dir / runs.COMPLETE_FILE, "")
        return run_dir

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RatingModel:
        """A fitted estimator from a run directory (written by ``train`` or :meth:`save`)."""
        from .. import runs

        run = runs.load_run(run_dir)
        cfg, data = run.model_config, run.config.get("data", {})
        train_config = TrainConfig.from_dict(run.config.get("train") or {})
        data_config = DataConfig.from_run(data)
        est = cls(cfg.kind, **{name: getattr(cfg, name) for name in MODEL_PARAMS},
                  **{name: getattr(train_config, name) for name in TRAIN_PARAMS},
                  **{name: getattr(data_config, name) for name in DATA_PARAMS})
        est.model_, est.config_, est.train_config_ = run.model, cfg, train_config
        est.user_encoder_, est.item_encoder_ = run.user_encoder, run.item_encoder
        est.history_ = run.metrics.get("history", [])
        est.best_epoch_ = run.metrics.get("best_epoch", 0)
        est.global_mean_ = float(data.get("global_mean", cfg.global_mean))
        est.data_section_ = data
        est.metrics_ = runs.metrics_object(est.history_, est.best_epoch_, run.metrics.get("valid"),
                                           run.metrics.get("test"), run.metrics.get("data", {}))
        log = Path(run_dir) / runs.LOG_FILE
        est._log_lines = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
        return est


RatingModel.__init__.__signature__ = inspect.Signature([
    inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=DEFAULT_KIND),
    *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
      for name, default in PARAMS.items()),
])
