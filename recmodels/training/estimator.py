"""``RatingModel``: a scikit-learn style estimator over the same models and trainer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import NotFittedError
from .config import TrainConfig


class RatingModel:
    """Train and use a rating model from DataFrames, scikit-learn style.

    Constructor arguments are stored as given and validated in :meth:`fit`; learned
    attributes end in ``_``.

    Parameters
    ----------
    model : {"mf", "neumf", "hybrid"}
    epochs, batch_size, optimizer, lr, embedding_lr, l2, patience, seed, device, num_threads
        See :class:`~recmodels.training.TrainConfig`.
    embedding_dim, num_layers, use_bias
        See :class:`~recmodels.models.ModelConfig`.
    user_col, item_col, rating_col : str
        Column names in the DataFrames given to :meth:`fit` and :meth:`predict`.
    rating_range : (float, float) or None
        Ratings outside it are an error in :meth:`fit`.
    item_embeddings : DataFrame or path, optional
        Hybrid only: the pretrained item table (column ``item_col`` plus numeric columns).
    embedding_fill : {"zeros", "mean"}
    progress : bool
        Show the tqdm bar.

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

    Examples
    --------
    >>> from recmodels.datasets import make_ratings
    >>> data = make_ratings(200, 100, 4000, seed=0).ratings
    >>> est = RatingModel("mf", epochs=2, batch_size=512).fit(data)
    >>> est.predict(data.head(3)).shape
    (3,)
    """

    def __init__(self, model: str = "neumf", *, epochs: int = 10, batch_size: int = 16384,
                 optimizer: str = "rowwise-adagrad", lr: float | None = None,
                 embedding_lr: float | None = None, l2: float = 0.05, patience: int | None = 2,
                 seed: int = 0, device: str = "auto", num_threads: int | None = None,
                 embedding_dim: int = 32, num_layers: int = 3, use_bias: bool = True,
                 user_col: str = "user_id", item_col: str = "item_id", rating_col: str = "rating",
                 rating_range: tuple[float, float] | None = (1.0, 5.0), item_embeddings=None,
                 embedding_fill: str = "zeros", progress: bool = False):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.embedding_lr = embedding_lr
        self.l2 = l2
        self.patience = patience
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.use_bias = use_bias
        self.user_col = user_col
        self.item_col = item_col
        self.rating_col = rating_col
        self.rating_range = rating_range
        self.item_embeddings = item_embeddings
        self.embedding_fill = embedding_fill
        self.progress = progress

    def _columns(self):
        from ..data import Columns

        return Columns(user=self.user_col, item=self.item_col, rating=self.rating_col)

    def _train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size,
                           optimizer=self.optimizer, lr=self.lr, embedding_lr=self.embedding_lr,
                           l2=self.l2, patience=self.patience, seed=self.seed,
                           device=self.device, num_threads=self.num_threads)

    def fit(self, train_df: pd.DataFrame, valid_df: pd.DataFrame | None = None) -> RatingModel:
        """Train on ``train_df`` (early-stopping on ``valid_df`` when given).

        Parameters
        ----------
        train_df : DataFrame with the user, item and rating columns
        valid_df : DataFrame, optional
            Rows with users/items not in ``train_df`` are dropped.

        Returns
        -------
        self
        """
        import torch

        from .. import data as D
        from ..devices import resolve_device
        from ..embeddings import align_item_embeddings, read_item_embeddings
        from ..errors import ConfigError
        from ..models import ModelConfig, build_model
        from .trainer import Trainer

        train_config = self._train_config()
        columns = self._columns()
        device = resolve_device(train_config.device)
        if (self.model == "hybrid") != (self.item_embeddings is not None):
            raise ConfigError("item_embeddings is required for model='hybrid' and only used by it")
        train_df = D.read_interactions(train_df, columns, rating_range=self.rating_range)
        user_encoder, item_encoder = D.fit_encoders(train_df, columns)
        train_enc, _ = D.encode(train_df, user_encoder, item_encoder, columns)
        valid_enc = None
        if valid_df is not None:
            valid_df = D.read_interactions(valid_df, columns, rating_range=self.rating_range)
            valid_enc, _ = D.encode(valid_df, user_encoder, item_encoder, columns)
        pretrained = None
        options = {}
        if self.item_embeddings is not None:
            ids, vectors = read_item_embeddings(self.item_embeddings, id_col=self.item_col)
            pretrained = align_item_embeddings(ids, vectors, item_encoder,
                                               fill=self.embedding_fill).matrix
            options["pretrained_dim"] = int(pretrained.shape[1])
        dropouts = (0.5,) + (0.3,) * (self.num_layers - 1)
        global_mean = float(np.mean(train_enc.rating, dtype=np.float64))
        config = ModelConfig(self.model, n_users=len(user_encoder), n_items=len(item_encoder),
                             embedding_dim=self.embedding_dim, num_layers=self.num_layers,
                             dropouts=dropouts, use_bias=self.use_bias, global_mean=global_mean,
                             **options)
        torch.manual_seed(train_config.seed)
        network = build_model(config, pretrained=pretrained)
        trainer = Trainer(network, train_config, device, log=None, progress=self.progress)
        trainer.fit(train_enc, valid_enc)
        network.load_state_dict(trainer.best_state_dict)
        self.model_ = network.cpu().eval()
        self.config_ = config
        self.train_config_ = train_config
        self.user_encoder_, self.item_encoder_ = user_encoder, item_encoder
        self.history_ = trainer.state.history
        self.best_epoch_ = trainer.state.best_epoch
        self.global_mean_ = global_mean
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this RatingModel is not fitted yet; call fit() first")

    def predict(self, df: pd.DataFrame, *, unknown: float | None = None) -> np.ndarray:
        """Predicted ratings for the (user, item) rows of ``df``.

        Parameters
        ----------
        df : DataFrame with the user and item columns
        unknown : float, optional
            Prediction for rows whose user or item was not in the training data
            (default: the training ratings' global mean).

        Returns
        -------
        ndarray of float32, shape (len(df),)
        """
        import torch

        from .trainer import predict_tensors

        self._check_fitted()
        users = self.user_encoder_.transform(df[self.user_col], unknown="mask")
        items = self.item_encoder_.transform(df[self.item_col], unknown="mask")
        known = (users >= 0) & (items >= 0)
        out = np.full(len(df), self.global_mean_ if unknown is None else unknown, np.float32)
        if known.any():
            pred = predict_tensors(self.model_, torch.from_numpy(users[known]),
                                   torch.from_numpy(items[known]))
            out[known] = pred.numpy()
        return out

    def score(self, df: pd.DataFrame) -> float:
        """RMSE of :meth:`predict` on ``df`` (lower is better)."""
        from ..metrics import rmse

        return rmse(df[self.rating_col].to_numpy(), self.predict(df))

    def save(self, run_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a run directory that :func:`recmodels.runs.load_run` (and export) can read.

        Holds ``config.json``, ``model.pt``, the id maps, ``metrics.json`` and ``COMPLETE``
        (no ``split/`` or ``last.pt``: an estimator's run cannot be resumed).
        """
        from .. import runs
        from ..fileio import write_json

        self._check_fitted()
        run_dir = runs.check_out_dir(run_dir, overwrite=overwrite)
        runs.prepare_run_dir(run_dir, overwrite=overwrite)
        data = {**self._columns().to_dict(),
                "rating_min": None if self.rating_range is None else float(self.rating_range[0]),
                "rating_max": None if self.rating_range is None else float(self.rating_range[1]),
                "global_mean": self.global_mean_, "sources": ["RatingModel.fit"], "split": {}}
        write_json(run_dir / runs.CONFIG_FILE,
                   runs.run_config(self.config_, self.train_config_, data))
        runs.save_torch({k: v.clone() for k, v in self.model_.state_dict().items()},
                        run_dir / runs.MODEL_FILE)
        self.user_encoder_.save(run_dir / runs.USER_IDS_FILE)
        self.item_encoder_.save(run_dir / runs.ITEM_IDS_FILE)
        runs.write_metrics(run_dir, {"history": self.history_, "best_epoch": self.best_epoch_})
        runs.write_text(run_dir / runs.COMPLETE_FILE, "")
        return run_dir

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> RatingModel:
        """A fitted estimator from a run directory (written by ``train`` or :meth:`save`)."""
        from .. import runs

        run = runs.load_run(run_dir)
        cfg, data = run.model_config, run.config.get("data", {})
        est = cls(cfg.kind, embedding_dim=cfg.embedding_dim, num_layers=cfg.num_layers,
                  use_bias=cfg.use_bias, user_col=data.get("user_col", "user_id"),
                  item_col=data.get("item_col", "item_id"),
                  rating_col=data.get("rating_col", "rating"))
        est.model_, est.config_ = run.model, cfg
        est.train_config_ = TrainConfig.from_dict(run.config.get("train") or {})
        est.user_encoder_, est.item_encoder_ = run.user_encoder, run.item_encoder
        est.history_ = run.metrics.get("history", [])
        est.best_epoch_ = run.metrics.get("best_epoch", 0)
        est.global_mean_ = float(data.get("global_mean", cfg.global_mean))
        return est
