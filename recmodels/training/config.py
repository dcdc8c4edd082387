"""The frozen training configuration."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import ConfigError

OPTIMIZERS = ("rowwise-adagrad", "adam", "sparse-adam", "sgd", "notebook")
PRECISIONS = ("fp32", "bf16")

# Learning rates used when TrainConfig.lr / embedding_lr are left as None.
DEFAULT_LR = {"rowwise-adagrad": 1e-3, "adam": 1e-3, "sparse-adam": 1e-3, "sgd": 0.05,
              "notebook": 1e-3}
DEFAULT_EMBEDDING_LR = 0.1
NOTEBOOK_SGD_LR = 5e-4
# batch_size=None: about this many optimizer steps per epoch, within these bounds.
BATCH_STEPS_PER_EPOCH = 100
MIN_BATCH_SIZE = 256
MAX_BATCH_SIZE = 16384
# l2=None: NeuMF and hybrid use NEUMF_L2; MF uses MF_L2_SCALE / sqrt(c_user * c_item) (c: mean
# training ratings per user / per item), clamped to MF_L2_BOUNDS (0.086 at 85 x 48, 0.12 at
# 35 x 59): 0.85x the best single-seed value, because MF collapses to a worse fixed point a little
# above it, and at the best value itself one seed in three or four did (docs/models.md).
NEUMF_L2 = 0.05
MF_L2_SCALE = 5.44
MF_L2_BOUNDS = (0.03, 0.2)
# The only TrainConfig fields a resumed run may change (the rest are part of the run).
RESUMABLE_FIELDS = ("epochs", "patience", "device", "num_threads")


@dataclass(frozen=True)
class TrainConfig:
    """How to train (everything that is not the network's shape).

    Parameters
    ----------
    epochs : int
        Maximum number of passes over the training rows. The default (200) is a cap that
        early stopping, not the cap, ends training at on any data size tried (best epochs
        were 5-60, see ``docs/models.md``).
    batch_size : int or None
        Rows per optimizer step. ``None`` (default): from the data, about
        :data:`BATCH_STEPS_PER_EPOCH` steps per epoch, ``clamp(n_train // 100, 256, 16384)``
        (:func:`data_batch_size`); the trainer resolves it and ``config.json`` records the
        number used. At the notebook's scale (3M training rows) that is 16384, the old fixed
        default; 80k rows get 800 instead of 5 steps of 16384 per epoch.
    optimizer : {"rowwise-adagrad", "adam", "sparse-adam", "sgd", "notebook"}
        ``"rowwise-adagrad"`` (default): sparse embedding gradients updated with row-wise
        Adagrad (one accumulator per row), Adam for the dense layers. ``"adam"``: dense Adam
        on everything. ``"sparse-adam"``: ``torch.optim.SparseAdam`` on the embeddings, Adam
        on the rest. ``"sgd"``: plain SGD. ``"notebook"``: Adam for epoch 1, then SGD with
        lr 5e-4 (the original notebook's schedule).
    lr : float, optional
        Learning rate of the dense layers (and of everything for adam/sgd/notebook);
        ``None`` picks the optimizer's default (:data:`DEFAULT_LR`).
    embedding_lr : float, optional
        Row-wise Adagrad learning rate of the embedding tables (default 0.1).
    l2 : float or None
        Weight of the L2 penalty on the embedding rows (and biases) each batch looks up.
        ``None`` (default): from the model and the data (:func:`default_l2`): NeuMF and
        hybrid 0.05; MF ``5.44 / sqrt(c_user * c_item)`` within [0.03, 0.2], where ``c_user``,
        ``c_item`` are the mean training ratings per user and per item (0.1 on 943 users x
        1,682 items x 80k ratings, 0.14 on 12.6k x 7.4k x 440k; MF wants more shrinkage on
        sparser data and collapses towards the bias model past about 1.1x / 1.4x those
        values). The trainer resolves it and ``config.json`` records the number used.
    l2_frequency_exponent : float
        Row-wise Adagrad only: a row seen ``c`` times per epoch (``c_mean`` on average in its
        table) is penalised ``l2 * (c / c_mean) ** l2_frequency_exponent`` per epoch. 1 is the
        plain per-lookup penalty (frequent rows regularised most); 0 regularises every row
        alike, as a Gaussian prior on each row does.
    l2_bias : float, optional
        Row-wise Adagrad only: the L2 weight of the bias tables (``None``: ``l2``).
    patience : int or None
        Stop after this many epochs without a better validation MSE; ``None`` never stops
        early.
    average_decay : float
        Weight averaging (Polyak/EMA over epochs, a cheap stand-in for a posterior mean):
        after each epoch ``avg = average_decay * avg + (1 - average_decay) * weights`` (the
        first epoch starts ``avg`` at the weights). Validation, early stopping, ``model.pt``
        and so export use the averaged weights; training continues from the raw ones.
        Default 0.7 (MF test RMSE 0.6490 -> 0.6480 on the 943 x 1,682 planted set); 0 turns
        it off (the weights of the best epoch are kept, as before). Configs saved before this
        option existed load as 0.
    seed : int
        Seeds initialisation, shuffling and dropout.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``"gpu"``, ``"gpu:N"`` are the same);
        see :func:`recmodels.devices.parse_device`.
    num_threads : int or None
        ``torch.set_num_threads`` while training. ``None`` (default): on CPU, the cores other
        processes leave free, at most torch's setting (all cores by default), measured when the
        fit starts and kept by its resume (:mod:`recmodels.training.threads`): a thread on a
        core another process holds slowed training 11-16x (``docs/benchmarks.md``). Give a
        number for bit-for-bit repeatable runs, whose results depend on the thread count.
    eval_batch_size : int
        Rows per forward pass when predicting validation/test rows.
    precision : {"bf16", "fp32"}
        ``"bf16"`` (default): the training forward of the MLP tower runs under
        ``torch.autocast(dtype=torch.bfloat16)`` (its Linear layers compute in bf16); the
        embeddings, the predict layer, the loss, the parameters and the optimizer state stay
        fp32, and evaluation/prediction is always fp32. On a device without native bf16
        (a GPU without bf16, a CPU without AVX512-BF16/AMX) it falls back to fp32, where
        emulated bf16 would be slower. ``"fp32"``: everything in fp32. Configs saved before
        this option existed load as ``"fp32"`` (how they were trained).
    refit : bool
        After the SGD epochs, refit the GMF and bias tables of the best weights: truncate the
        GMF product at the rank with the lowest validation MSE, then alternate exact ridge
        regressions of the user and item rows, then mean-field variational ones
        (:mod:`recmodels.training.refit`). Needs validation rows (at least 500), and keeps the
        SGD weights when it brings no gain. Default on (NeuMF at the notebook's scale: 68.8 % ->
        72.2 % of the planted gap, 72.6 % clipped, ``docs/models.md``); configs saved before
        this option existed load as off.
    refit_tables : bool
        With implicit parts (``ModelConfig.implicit``), every ridge sweep of the refit also
        re-solves the implicit tables (:mod:`recmodels.training.refit_implicit`). Default on
        (test RMSE MovieLens NeuMF 0.8162 -> 0.8127, Goodreads 0.8524 -> 0.8432); off holds the
        tables as the SGD left them, for a cheaper refit where parts are kept on a large set (4x
        the refit's time at the notebook's scale with the parts forced, ``docs/benchmarks.md``).
    """

    epochs: int = 200
    batch_size: int | None = None
    optimizer: str = "rowwise-adagrad"
    lr: float | None = None
    embedding_lr: float | None = None
    l2: float | None = None
    l2_frequency_exponent: float = 0.5
    l2_bias: float | None = None
    patience: int | None = 2
    average_decay: float = 0.7
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    eval_batch_size: int = 65536
    precision: str = "bf16"
    refit: bool = True
    refit_tables: bool = True

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        decay = self.average_decay
        if isinstance(decay, bool) or not (isinstance(decay, (int, float)) and 0 <= decay < 1):
            raise ConfigError(f"average_decay must be a number in [0, 1); got {decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        for name in ("lr", "embedding_lr"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0
                                          and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number; got {value!r}")
        if self.l2 is not None and not (isinstance(self.l2, (int, float)) and self.l2 >= 0
                                        and math.isfinite(self.l2)):
            raise ConfigError(f"l2 must be a non-negative number or None; got {self.l2!r}")
        if not (isinstance(self.l2_frequency_exponent, (int, float))
                and 0 <= self.l2_frequency_exponent <= 2 and math.isfinite(self.l2_frequency_exponent)):
            raise ConfigError(f"l2_frequency_exponent must be in [0, 2]; got {self.l2_frequency_exponent!r}")
        if self.l2_bias is not None and not (isinstance(self.l2_bias, (int, float)) and self.l2_bias >= 0
                                             and math.isfinite(self.l2_bias)):
            raise ConfigError(f"l2_bias must be a non-negative number or None; got {self.l2_bias!r}")
        patience = self.patience
        if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool)
                                     or patience < 1):
            raise ConfigError(f"patience must be a positive integer or None; got {self.patience!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}")
        if not isinstance(self.refit, bool):
            raise ConfigError(f"refit must be true or false; got {self.refit!r}")
        if not isinstance(self.refit_tables, bool):
            raise ConfigError(f"refit_tables must be true or false; got {self.refit_tables!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.num_threads is not None and (not isinstance(self.num_threads, int)
                                             or isinstance(self.num_threads, bool) or self.num_threads < 1):
            raise ConfigError(f"num_threads must be a positive integer; got {self.num_threads!r}")
        if not isinstance(self.device, str):
            raise ConfigError(f"device must be a string such as 'auto', 'cpu', 'cuda:0'; got {self.device!r}")
        from ..devices import parse_device

        parse_device(self.device)

    @property
    def resolved_lr(self) -> float:
        """``lr``, or the optimizer's default."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def resolved_embedding_lr(self) -> float:
        """``embedding_lr``, or the default for row-wise Adagrad."""
        return float(self.embedding_lr) if self.embedding_lr is not None else DEFAULT_EMBEDDING_LR

    @property
    def is_resolved(self) -> bool:
        """Whether every "from the data" field (``batch_size``, ``l2``) holds a number."""
        return self.batch_size is not None and self.l2 is not None

    def resolve(self, n_train: int, kind: str = "neumf", n_users: int | None = None,
                n_items: int | None = None) -> TrainConfig:
        """This config with ``batch_size`` and ``l2`` fixed for the data where ``None``.

        Parameters
        ----------
        n_train : int
            Training rows.
        kind : str
            Model kind (``l2``'s default depends on it).
        n_users, n_items : int, optional
            Distinct users and items among the training rows (MF's ``l2``; default: as
            many as rows, i.e. no information, which gives the largest ``l2``).
        """
        changes = {}
        if self.batch_size is None:
            changes["batch_size"] = data_batch_size(n_train)
        if self.l2 is None:
            changes["l2"] = default_l2(kind, n_train, n_users or n_train, n_items or n_train)
        return self.replace(**changes) if changes else self

    def to_dict(self) -> dict:
        """A JSON-ready dict (``from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error.

        Keys added after a run was saved take the value that reproduces how it was trained:
        ``precision`` ``"fp32"``, ``average_decay`` 0 (no weight averaging), ``refit`` off.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**{"precision": "fp32", "average_decay": 0.0, "refit": False, **data})

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def data_batch_size(n_train: int) -> int:
    """The batch size ``batch_size=None`` means for ``n_train`` rows.

    About :data:`BATCH_STEPS_PER_EPOCH` steps per epoch, clamped to
    [:data:`MIN_BATCH_SIZE`, :data:`MAX_BATCH_SIZE`].

    Examples
    --------
    >>> data_batch_size(80_000), data_batch_size(440_000), data_batch_size(3_080_000)
    (800, 4400, 16384)
    >>> data_batch_size(1_000)
    256
    """
    return int(min(max(int(n_train) // BATCH_STEPS_PER_EPOCH, MIN_BATCH_SIZE), MAX_BATCH_SIZE))


def default_l2(kind: str, n_train: int, n_users: int, n_items: int) -> float:
    """The ``l2`` that ``l2=None`` means for a model kind and the training data's shape.

    Examples
    --------
    >>> default_l2("neumf", 80_000, 943, 1_650)
    0.05
    >>> round(default_l2("mf", 80_000, 943, 1_650), 3), round(default_l2("mf", 440_000, 12_600, 7_400), 3)
    (0.1, 0.14)
    """
    if kind != "mf":
        return NEUMF_L2
    per_user = max(n_train, 1) / max(n_users, 1)
    per_item = max(n_train, 1) / max(n_items, 1)
    low, high = MF_L2_BOUNDS
    return float(min(max(MF_L2_SCALE / math.sqrt(per_user * per_item), low), high))
