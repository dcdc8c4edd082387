"""The frozen model configuration every network is built from."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..errors import ConfigError

MODEL_KINDS = ("mf", "neumf", "hybrid")


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
    dropouts : tuple of float
        Dropout before each MLP linear; length ``num_layers``.
    init_std : float
        Embeddings are initialised from N(0, init_std); linears are Xavier-uniform.
    pretrained_dim : int
        Width of the hybrid's pretrained item table (0 for mf/neumf).
    use_bias : bool
        Add learned user and item bias terms to the prediction.
    global_mean : float
        Constant added to every prediction (the training ratings' mean).

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
    dropouts: tuple[float, ...] = field(default=(0.5, 0.3, 0.3))
    init_std: float = 0.01
    pretrained_dim: int = 0
    use_bias: bool = True
    global_mean: float = 0.0

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model kind must be one of {', '.join(MODEL_KINDS)}; got {self.kind!r}")
        for name in ("n_users", "n_items", "embedding_dim", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        object.__setattr__(self, "dropouts", tuple(float(p) for p in self.dropouts))
        if self.kind != "mf" and len(self.dropouts) != self.num_layers:
            raise ConfigError(
                f"dropouts needs one value per MLP layer ({self.num_layers}); got {self.dropouts}"
            )
        if any(not 0.0 <= p < 1.0 for p in self.dropouts):
            raise ConfigError(f"dropouts must be in [0, 1); got {self.dropouts}")
        if not (self.init_std > 0 and math.isfinite(self.init_std)):
            raise ConfigError(f"init_std must be positive; got {self.init_std!r}")
        if self.kind == "hybrid" and self.pretrained_dim < 1:
            raise ConfigError("a hybrid model needs pretrained_dim >= 1 (the item embedding width)")
        if self.kind != "hybrid" and self.pretrained_dim != 0:
            raise ConfigError(f"pretrained_dim is only for hybrid models; got {self.pretrained_dim}")
        if not math.isfinite(self.global_mean):
            raise ConfigError(f"global_mean must be finite; got {self.global_mean!r}")
        object.__setattr__(self, "global_mean", float(self.global_mean))
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
        """A JSON-ready dict (``from_dict`` inverts it)."""
        out = dataclasses.asdict(self)
        out["dropouts"] = list(self.dropouts)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model config key(s): {', '.join(unknown)}")
        kwargs = dict(data)
        if "dropouts" in kwargs:
            kwargs["dropouts"] = tuple(kwargs["dropouts"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"invalid model config: {exc}") from None

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
