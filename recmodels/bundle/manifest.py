"""The bundle manifest as typed, validated dataclasses (torch-, onnx- and sklearn-free).

``docs/bundle-format.md`` specifies every field. Each section of ``manifest.json`` is a frozen
dataclass whose attributes are its JSON keys:

* :meth:`Manifest.from_dict` checks that every required field is present with the right JSON
  type and raises :class:`~recmodels.errors.BundleError` with one line naming the field (for
  example ``graph.inputs[0].name``) and the manifest file otherwise;
* :meth:`Manifest.to_dict` gives the JSON object back. Keys this reader does not know (written
  by a newer minor version) are kept in each section's ``extra`` and written back unchanged, so
  ``Manifest.from_dict(d).to_dict() == d`` for every valid manifest and the self-digest
  (:func:`manifest_digest`) of a re-serialised manifest is the one it was written with.

Values are kept exactly as they were read (an integer rating bound stays an integer), for the
same reason.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import BundleError
from .layout import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "FileEntry",
    "FoldInSection",
    "GraphSection",
    "IdMap",
    "IdsSection",
    "InitializerInfo",
    "Manifest",
    "ModelSection",
    "ParitySection",
    "PriorSection",
    "RatingSection",
    "RawIdGraphSection",
    "RawIdParity",
    "RecommendGraphSection",
    "RecommendParity",
    "RetrieveGraphSection",
    "TensorInfo",
    "manifest_digest",
]


def manifest_digest(manifest: dict) -> str:
    """Hex sha256 of the canonical JSON of ``manifest`` without its ``manifest_sha256`` key.

    Canonical: ``json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)``
    encoded as UTF-8 (see ``docs/bundle-format.md``, *Checksums*).
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- field checks: (value, field path, where) -> value, or a one-line BundleError -------------------
Check = Callable[[Any, str, str], Any]


def _fail(where: str, path: str, problem: str) -> BundleError:
    return BundleError(f"{where}: manifest field '{path}' {problem}")


def _got(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(value, path, where):
    if not isinstance(value, str):
        raise _fail(where, path, f"must be a string; got {_got(value)}")
    return value


def _integer(value, path, where):
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, path, f"must be an integer; got {_got(value)}")
    return value


def _number(value, path, where):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, float) or not math.isfinite(value):
        raise _fail(where, path, f"must be a finite number; got {_got(value)}")
    return value


def _boolean(value, path, where):
    if not isinstance(value, bool):
        raise _fail(where, path, f"must be true or false; got {_got(value)}")
    return value


def _object(value, path, where):
    if not isinstance(value, dict):
        raise _fail(where, path, f"must be an object; got {_got(value)}")
    return copy.deepcopy(value)


def _dim(value, path, where):
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _fail(where, path, f"must be a dimension name or size; got {_got(value)}")


def _nullable(check: Check) -> Check:
    def nullable(value, path, where):
        return None if value is None else check(value, path, where)

    return nullable


def _list_of(check: Check) -> Check:
    def list_of(value, path, where):
        if not isinstance(value, list):
            raise _fail(where, path, f"must be a list; got {_got(value)}")
        return [check(item, f"{path}[{k}]", where) for k, item in enumerate(value)]

    return list_of


def _map_of(check: Check) -> Check:
    def map_of(value, path, where):
        if not isinstance(value, dict):
            raise _fail(where, path, f"must be an object; got {_got(value)}")
        return {key: check(item, f"{path}.{key}", where) for key, item in value.items()}

    return map_of


def _section(cls) -> Check:
    return lambda value, path, where: cls._parse(value, path, where)


def _f(check: Check, *, optional: bool = False, **kw):
    """A manifest field. ``optional``: the key may be absent (the attribute is then None)."""
    if optional:
        kw.setdefault("default", None)
    return field(metadata={"check": check, "optional": optional}, **kw)


def _dump(value):
    if isinstance(value, _Section):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {key: _dump(item) for key, item in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class _Section:
    """``from_dict`` / ``to_dict`` shared by every manifest section."""

    extra: dict = field(default_factory=dict, repr=False)
    """Keys of this section that this reader does not know, kept as read and written back."""

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "manifest"):
        """Build and validate from the parsed JSON (``where`` names the file in errors).

        Raises
        ------
        BundleError
            A required field is missing or has the wrong JSON type (one line naming it).
        """
        return cls._parse(data, "", where)

    @classmethod
    def _parse(cls, data, path: str, where: str):
        if not isinstance(data, dict):
            if not path:
                raise BundleError(f"{where}: manifest is not a JSON object")
            raise _fail(where, path, f"must be an object; got {_got(data)}")
        values, extra, known = {}, {}, set()
        for f in fields(cls):
            if f.name == "extra":
                continue
            known.add(f.name)
            sub = f"{path}.{f.name}" if path else f.name
            optional = f.metadata["optional"]
            if f.name not in data:
                if optional:
                    continue
                raise _fail(where, sub, "is missing")
            value = data[f.name]
            if value is None and optional:
                extra[f.name] = None  # an explicit null: the attribute is None, the key written back
                continue
            values[f.name] = f.metadata["check"](value, sub, where)
        extra.update({k: copy.deepcopy(v) for k, v in data.items() if k not in known})
        return cls(**values, extra=extra)

    def to_dict(self) -> dict:
        """The JSON object (fresh containers; unknown keys from :attr:`extra` included)."""
        out = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata["optional"]:
                continue
            out[f.name] = _dump(value)
        for key, value in self.extra.items():
            out.setdefault(key, copy.deepcopy(value))
        return out


# -- the sections, leaves first ---------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TensorInfo(_Section):
    """A graph input or output: ``name``, ``dtype`` (``"int64"``, ``"float32"``, ...), ``shape``."""

    name: str = _f(_string)
    dtype: str = _f(_string)
    shape: list = _f(_list_of(_dim))
    """Dimension names or sizes; ``["batch"]`` for every recmodels graph."""


@dataclass(frozen=True, kw_only=True)
class InitializerInfo(_Section):
    """One graph initializer (weight tensor): its name and shape."""

    name: str = _f(_string)
    shape: list = _f(_list_of(_integer))


@dataclass(frozen=True, kw_only=True)
class FileEntry(_Section):
    """A bundle file's checksum: lowercase hex ``sha256`` of its bytes and its size in ``bytes``."""

    sha256: str = _f(_string)
    bytes: int = _f(_integer)


@dataclass(frozen=True, kw_only=True)
class ModelSection(_Section):
    """``model``: what network the graph computes and how it was rewritten."""

    kind: str = _f(_string)
    """``"mf"``, ``"neumf"`` or ``"hybrid"``."""
    config: dict = _f(_object)
    """The ``ModelConfig.to_dict()`` the network was built from."""
    folded: bool = _f(_boolean)
    folding: list = _f(_list_of(_string))
    """Human-readable notes on what was folded or removed."""


@dataclass(frozen=True, kw_only=True)
class _GraphFile(_Section):
    """A graph file of the bundle and its optional external-data file."""

    file: str = _f(_string)
    external_data: str | None = _f(_nullable(_string))
    """The ONNX external-data file beside the graph, or None when the weights are inline."""


@dataclass(frozen=True, kw_only=True)
class _SizedGraphFile(_GraphFile):
    initializer_bytes: int = _f(_integer)


@dataclass(frozen=True, kw_only=True)
class _Graph(_GraphFile):
    """What every full graph section records: opset, IR version and the input/output tensors."""

    opset: int = _f(_integer)
    ir_version: int = _f(_integer)
    inputs: list = _f(_list_of(_section(TensorInfo)))
    outputs: list = _f(_list_of(_section(TensorInfo)))


@dataclass(frozen=True, kw_only=True)
class GraphSection(_Graph):
    """``graph``: the scoring graph ``model.onnx``."""

    initializer_bytes: int = _f(_integer)
    initializers: list = _f(_list_of(_section(InitializerInfo)))


@dataclass(frozen=True, kw_only=True)
class RawIdGraphSection(_Graph):
    """``graph_raw_ids``: the optional raw-id graph ``model_ids.onnx`` (``--embed-encoders``)."""

    opset_import: dict = _f(_map_of(_integer))
    """Domain -> opset, e.g. ``{"ai.onnx": 17, "ai.onnx.ml": 2}``."""
    fallback_score: float = _f(_number)
    """The float32 value the graph returns for an unknown id."""


@dataclass(frozen=True, kw_only=True)
class RetrieveGraphSection(_SizedGraphFile):
    """``graph_recommend.retrieve``: the cheap first-stage graph of ``recommend --candidates``."""


@dataclass(frozen=True, kw_only=True)
class RankAllGraphSection(_SizedGraphFile):
    """``graph_recommend.rank_all``: the dot-product part ranked over the whole catalogue.

    Inputs ``user_index``, ``exclude`` ((row, item index) pairs) and ``k``; for MF the exact
    model, for NeuMF/hybrid the first stage of ``--candidates``. Used whenever every item is a
    candidate.
    """


@dataclass(frozen=True, kw_only=True)
class _Parity(_Section):
    """A parity check at export: passed, the largest difference, the tolerance, where and how."""

    passed: bool = _f(_boolean)
    max_abs_diff: float = _f(_number)
    tolerance: float = _f(_number)
    provider: str = _f(_string)
    seed: int = _f(_integer)


@dataclass(frozen=True, kw_only=True)
class RecommendParity(_Parity):
    """``graph_recommend.parity``: ``recommend.onnx`` (and ``retrieve.onnx``) checked at export."""

    n_users: int = _f(_integer)
    n_items: int = _f(_integer)
    n_excluded: int = _f(_integer)
    retrieve_max_abs_diff: float | None = _f(_nullable(_number))
    """``retrieve.onnx`` against the dot-product part computed in float64 (None without it)."""
    rank_all_max_abs_diff: float | None = _f(_nullable(_number), optional=True)
    """``rank_all.onnx`` against the dot-product part in float64 (absent in older bundles)."""


@dataclass(frozen=True, kw_only=True)
class RecommendGraphSection(_Graph):
    """``graph_recommend``: the top-k graph ``recommend.onnx`` (bundles made before it have none)."""

    initializer_bytes: int = _f(_integer)
    item_multiple: int = _f(_integer)
    """``item_index`` must have a multiple of this many entries (pad with excluded columns)."""
    retrieve: RetrieveGraphSection | None = _f(_nullable(_section(RetrieveGraphSection)))
    """NeuMF and hybrid: ``retrieve.onnx`` (same interface, dot-product part only); None for MF."""
    rank_all: RankAllGraphSection | None = _f(_section(RankAllGraphSection), optional=True)
    """``rank_all.onnx`` (absent in bundles exported before it: the tiled graphs serve then)."""
    parity: RecommendParity = _f(_section(RecommendParity))


@dataclass(frozen=True, kw_only=True)
class IdMap(_Section):
    """``ids.user`` / ``ids.item``: one id map."""

    column: str = _f(_string)
    """Input column the ids came from (and the default column to score)."""
    dtype: str = _f(_string)
    """``"int64"`` or ``"string"``."""
    count: int = _f(_integer)
    file: str = _f(_string)


@dataclass(frozen=True, kw_only=True)
class IdsSection(_Section):
    """``ids``: the user and the item id map."""

    user: IdMap = _f(_section(IdMap))
    item: IdMap = _f(_section(IdMap))


@dataclass(frozen=True, kw_only=True)
class RatingSection(_Section):
    """``rating``: the training ratings' column, range, mean and grid step."""

    column: str = _f(_string)
    min: float | None = _f(_nullable(_number))
    max: float | None = _f(_nullable(_number))
    global_mean: float = _f(_number)
    step: float | None = _f(_number, optional=True)
    """The ratings' grid step from ``min`` (0.5 for half stars): hit accuracy rounds to it.
    Absent in bundles exported before it was recorded (then: whole numbers)."""


@dataclass(frozen=True, kw_only=True)
class _PairParity(_Parity):
    n_pairs: int = _f(_integer)
    batch_sizes: list = _f(_list_of(_integer))
    max_abs_diff_by_batch: dict = _f(_map_of(_number))
    """Batch size (as a string) -> max abs diff."""


@dataclass(frozen=True, kw_only=True)
class RawIdParity(_PairParity):
    """``parity.raw_ids``: ``model_ids.onnx`` checked against ``model.onnx``."""

    n_unknown: int = _f(_integer)


@dataclass(frozen=True, kw_only=True)
class ParitySection(_PairParity):
    """``parity``: the graph checked in onnxruntime against the model it was built from."""

    reference: str | None = _f(_string, optional=True)
    """What the graph was compared with when not the torch model (the test factory's numpy oracle)."""
    raw_ids: RawIdParity | None = _f(_section(RawIdParity), optional=True)


@dataclass(frozen=True, kw_only=True)
class FoldInSection(_Section):
    """``prior.fold_in``: what ``--history`` folds new (and known) users and items in with."""

    files: dict = _f(_map_of(_string))
    """Role (``user_vectors``, ``item_vectors``, optional ``user_counts``, ``item_counts``) -> ``.npy``."""
    rank: int = _f(_integer)
    """Width of the effective GMF rows (0: no GMF part, only the bias is folded in)."""
    user_precision: list = _f(_list_of(_number))
    """Prior precision of a user's ``[vector..., bias]`` (``rank + 1`` values)."""
    item_precision: list = _f(_list_of(_number))
    source: str = _f(_string)
    """``"refit"`` (the refit's ridge weights) or ``"empirical"`` (noise / variance of the rows)."""


@dataclass(frozen=True, kw_only=True)
class PriorSection(_Section):
    """``prior``: the average user and item rows appended to the graphs' tables (absent in older
    bundles, which score any pair with an unknown side ``fallback_score``)."""

    user_row: int = _f(_integer)
    """Index of the prior user in ``model.onnx`` and the recommend graphs (the trained user count)."""
    item_row: int = _f(_integer)
    """Index of the prior item in ``model.onnx`` (the recommend graphs have no prior item)."""
    definition: str = _f(_string)
    max_abs_diff: float = _f(_number)
    """``model.onnx``'s scores with a prior row against the spec's float64 reference, at export."""
    fold_in: FoldInSection | None = _f(_nullable(_section(FoldInSection)))


@dataclass(frozen=True, kw_only=True)
class Manifest(_Section):
    """``manifest.json``, typed. Build one and write it with :func:`recmodels.bundle.finalize_bundle`.

    ``files``, ``manifest_sha256``, ``format`` and ``format_version`` are filled in by
    ``finalize_bundle``; every other field is the writer's.

    Examples
    --------
    >>> m = Bundle.load("bundles/neumf").manifest          # doctest: +SKIP
    >>> m.graph.opset, m.ids.user.count, m.parity.max_abs_diff    # doctest: +SKIP
    (17, 943, 2.4e-07)
    >>> Manifest.from_dict(m.to_dict()) == m                       # doctest: +SKIP
    True
    """

    model: ModelSection = _f(_section(ModelSection))
    graph: GraphSection = _f(_section(GraphSection))
    ids: IdsSection = _f(_section(IdsSection))
    rating: RatingSection = _f(_section(RatingSection))
    fallback_score: float = _f(_number)
    """Score of a pair whose user or item is unknown."""
    metrics: dict = _f(_object)
    """The run's metrics: ``train``, ``valid``, ``test`` (objects), ``best_epoch`` (int)."""
    versions: dict = _f(_map_of(_string))
    parity: ParitySection = _f(_section(ParitySection))
    source: dict = _f(_object)
    created_at: str = _f(_string)
    graph_raw_ids: RawIdGraphSection | None = _f(_section(RawIdGraphSection), optional=True)
    graph_recommend: RecommendGraphSection | None = _f(_section(RecommendGraphSection), optional=True)
    """The recommend graph(s); None in bundles exported before ``recmodels recommend`` existed."""
    prior: PriorSection | None = _f(_section(PriorSection), optional=True)
    """The prior rows and fold-in arrays; None in bundles exported before them."""
    files: dict = _f(_map_of(_section(FileEntry)), default_factory=dict)
    """File name -> :class:`FileEntry`, for every bundle file but the manifest."""
    manifest_sha256: str | None = _f(_string, default=None)
    format: str = _f(_string, default=FORMAT_NAME)
    format_version: int = _f(_integer, default=FORMAT_VERSION)

    @property
    def digest(self) -> str | None:
        """The recorded ``manifest_sha256`` (None before :func:`finalize_bundle`)."""
        return self.manifest_sha256

    def compute_digest(self) -> str:
        """The digest of this manifest's content (what ``manifest_sha256`` must equal)."""
        return manifest_digest(self.to_dict())
