"""The frozen model configuration every network is built from."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import ConfigError

MODEL_KINDS = ("mf", "neumf", "hybrid")
IMPLICIT_PARTS = ("none", "user", "item", "both")
DEFAULT_KIND = "neumf"
# Filled from the data by the training set-up, never by a user.
DATA_FIELDS = ("n_users", "n_items", "pretrained_dim", "global_mean", "rated_pairs")


def default_dropouts(num_layers: int) -> tuple[float, ...]:
    """The default MLP dropouts: 0.5 before the first linear, 0.3 before each later one."""
    return (0.5,) + (0.3,) * (num_layers - 1)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network exactly (with its state dict).

    Parameters
    ----------
    kind : {"mf", "neumf", "hybrid"}
        ``"mf"``: GMF product -> linear (the notebook's baseline). ``"neumf"``: GMF branch +
        MLP tower. ``"hybrid"``: NeuMF plus a frozen pretrained item table.
    n_users, n_items : int
        Rows of the user and item tables (the encoders' sizes).
    embedding_dim : int
        Width of the GMF embeddings; the MLP tower ends at this width too.
    num_layers : int
        Linear layers in the MLP tower. MLP embeddings are
        ``embedding_dim * 2 ** (num_layers - 1)`` wide, so the tower's input is
        ``embedding_dim * 2 ** num_layers`` and each layer halves it
        (256 -> 128 -> 64 -> 32 at the notebook's sizes).
    dropouts : tuple of float, optional
        Dropout before each MLP linear; length ``num_layers``. ``None`` (the default) means
        :func:`default_dropouts` of ``num_layers`` (``(0.5, 0.3, 0.3)`` for 3 layers); the
        resolved tuple is what the config holds and saves.
    init_std : float
        Embeddings are initialised from N(0, init_std); linears are Xavier-uniform.
    pretrained_dim : int
        Width of the hybrid's pretrained item table (0 for mf/neumf).
    use_bias : bool
        Add learned user and item bias terms to the prediction.
    global_mean : float
        Constant added to every prediction (the training ratings' mean).
    implicit : {"none", "user", "item", "both"}
        The implicit signal (SVD++, :mod:`recmodels.models.implicit`): ``"user"`` adds to a
        user's GMF row the normalised sum of vectors of the items the user rated in training,
        ``"item"`` adds to an item's GMF row that of the users who rated it, ``"both"`` both.
        ``"item"`` is the default: it won on both real sets by 0.013-0.022 test RMSE; on data
        without such a signal (planted data) the trainer's probe drops it after the first epoch
        (:mod:`recmodels.training.implicit_probe`, ``docs/models.md``). ``"none"``: neither
        (configs saved before this option existed load so).
    rated_pairs : int
        With ``implicit``: the distinct (user, item) pairs of the training rows (the length of
        ``N``'s buffers; the training set-up fills it). 0 otherwise.

    Examples
    --------
    >>> cfg = ModelConfig("neumf", n_users=10, n_items=20)
    >>> cfg.mlp_embedding_dim, cfg.mlp_layer_sizes
    (128, (256, 128, 64, 32))
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    kind: str
    n_users: int
    n_items: int
    embedding_dim: int = 32
    num_layers: int = 3
    dropouts: tuple[float, ...] | None = None
    init_std: float = 0.01
    pretrained_dim: int = 0
    use_bias: bool = True
    global_mean: float = 0.0
    implicit: str = "item"
    rated_pairs: int = 0

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {', '.join(MODEL_KINDS)}; got {self.kind!r}")
        for name in ("n_users", "n_items", "embedding_dim", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        dropouts = default_dropouts(self.num_layers) if self.dropouts is None else self.dropouts
        try:
            dropouts = tuple(float(p) for p in dropouts)
        except (TypeError, ValueError):
            raise ConfigError(f"dropouts must be a list of numbers; got {self.dropouts!r}") from None
        object.__setattr__(self, "dropouts", dropouts)
        if self.kind != "mf" and len(self.dropouts) != self.num_layers:
            raise ConfigError(
                f"dropouts needs one value per MLP layer ({self.num_layers}); got {self.dropouts}"
            )
        if any(not 0.0 <= p < 1.0 for p in self.dropouts):
            raise ConfigError(f"dropouts must be in [0, 1); got {self.dropouts}")
        std = self.init_std
        if isinstance(std, bool) or not (isinstance(std, (int, float)) and std > 0 and math.isfinite(std)):
            raise ConfigError(f"init_std must be positive; got {self.init_std!r}")
        if self.kind == "hybrid" and self.pretrained_dim < 1:
            raise ConfigError("a hybrid model needs pretrained_dim >= 1 (the item embedding width)")
        if self.kind != "hybrid" and self.pretrained_dim != 0:
            raise ConfigError(f"pretrained_dim is only for hybrid models; got {self.pretrained_dim}")
        if not math.isfinite(self.global_mean):
            raise ConfigError(f"global_mean must be finite; got {self.global_mean!r}")
        object.__setattr__(self, "global_mean", float(self.global_mean))
        if self.implicit not in IMPLICIT_PARTS:
            raise ConfigError(f"implicit must be one of {', '.join(IMPLICIT_PARTS)}; got {self.implicit!r}")
        pairs = self.rated_pairs
        if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 0:
            raise ConfigError(f"rated_pairs must be a non-negative integer; got {pairs!r}")
        if self.use_bias not in (True, False):
            raise ConfigError(f"use_bias must be true or false; got {self.use_bias!r}")
        object.__setattr__(self, "use_bias", bool(self.use_bias))

    @property
    def mlp_embedding_dim(self) -> int:
        """Width of each MLP embedding (user and item)."""
        return self.embedding_dim * 2 ** (self.num_layers - 1)

    @property
    def mlp_layer_sizes(self) -> tuple[int, ...]:
        """Input width of the tower followed by each layer's output width."""
        first = 2 * self.mlp_embedding_dim
        return tuple(first >> i for i in range(self.num_layers + 1))

    def to_dict(self) -> dict:
        """A JSON-ready dict (``from_dict`` inverts it). Without the implicit signal its two fields
        are left out, so such a config is written as before the option existed (and
        :meth:`from_dict` reads a config without them as ``implicit="none"``)."""
        out = dataclasses.asdict(self)
        out["dropouts"] = list(self.dropouts)
        if self.implicit == "none" and not self.rated_pairs:
            del out["implicit"], out["rated_pairs"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model config key(s): {', '.join(unknown)}")
        kwargs = {"implicit": "none", **data}  # saved before the option existed: without it
        if isinstance(kwargs.get("dropouts"), list):
            kwargs["dropouts"] = tuple(kwargs["dropouts"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"invalid model config: {exc}") from None

    @classmethod
    def user_fields(cls) -> tuple[str, ...]:
        """The fields a user chooses (everything but ``kind`` and :data:`DATA_FIELDS`)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("kind", *DATA_FIELDS))

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
