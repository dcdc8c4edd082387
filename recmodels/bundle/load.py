"""Writing the manifest (:func:`finalize_bundle`) and opening a verified bundle (:meth:`Bundle.load`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..encoders import IdEncoder
from ..errors import BundleError, DataError
from ..fileio import sha256_file, write_json
from .layout import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ID_FILES,
    MANIFEST_FILE,
    REQUIRED_FILES,
    RUN_CONFIG_FILE,
)
from .manifest import FileEntry, Manifest, manifest_digest


def finalize_bundle(directory: str | os.PathLike, manifest: Manifest) -> Manifest:
    """Checksum every file in ``directory`` and write ``manifest.json`` beside them.

    Parameters
    ----------
    directory : path-like
        A (staging) directory already holding the graph and the id maps.
    manifest : Manifest
        Every field but ``files``, ``manifest_sha256``, ``format`` and ``format_version``,
        which this function fills in (whatever ``manifest`` holds there is replaced).

    Returns
    -------
    Manifest
        The manifest as written (``manifest.digest`` is its ``manifest_sha256``).

    Raises
    ------
    BundleError
        ``directory`` lacks the graph or an id map.
    """
    if not isinstance(manifest, Manifest):
        raise TypeError(f"finalize_bundle needs a Manifest, got {type(manifest).__name__}")
    directory = Path(directory)
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise BundleError(f"{directory}: cannot finalize bundle, missing {', '.join(missing)}")
    files = {
        path.name: FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
        for path in sorted(directory.iterdir())
        if path.name != MANIFEST_FILE and not path.name.startswith(".")
    }
    manifest = dataclasses.replace(
        manifest, files=files, format=FORMAT_NAME, format_version=FORMAT_VERSION, manifest_sha256=None
    )
    manifest = dataclasses.replace(manifest, manifest_sha256=manifest.compute_digest())
    write_json(directory / MANIFEST_FILE, manifest.to_dict())
    return manifest


def path_kind(path: str | os.PathLike) -> str | None:
    """``"bundle"`` (has ``manifest.json``), ``"run"`` (a run directory: ``config.json``, no
    manifest) or None: the one answer to "is this a run or a bundle" for every command."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file():
        return "bundle"
    if (path / RUN_CONFIG_FILE).is_file():
        return "run"
    return None


def _read_manifest(path: Path) -> Manifest:
    """Parse, check format and version, verify the self-digest, then validate the fields."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        if path_kind(path) == "run":
            raise BundleError(f"{path} is a training run directory, not a bundle; export it first with "
                              f"`recmodels export {path} --format onnx --out BUNDLE`")
        raise BundleError(f"{path}: not a recmodels bundle (no {MANIFEST_FILE})")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
        raise BundleError(f"{manifest_path}: not a recmodels bundle manifest")
    version = raw.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version!r} is not supported by this recmodels "
            f"(reads version {FORMAT_VERSION}); upgrade recmodels or re-export the bundle"
        )
    try:
        modified = raw.get("manifest_sha256") != manifest_digest(raw)
    except ValueError:  # NaN or infinity: never written by an exporter
        modified = True
    if modified:
        raise BundleError(f"{manifest_path}: manifest was modified after export (checksum mismatch)")
    return Manifest.from_dict(raw, where=str(manifest_path))


def _check_files(path: Path, manifest: Manifest, verify_checksums: bool) -> None:
    manifest_path = path / MANIFEST_FILE
    graphs = [manifest.graph.file] + ([manifest.graph_raw_ids.file] if manifest.graph_raw_ids else [])
    recommend = manifest.graph_recommend
    if recommend is not None:
        graphs += [recommend.file] + ([recommend.retrieve.file] if recommend.retrieve else [])
        graphs += [recommend.rank_all.file] if recommend.rank_all else []
    if manifest.prior is not None and manifest.prior.fold_in is not None:
        graphs += list(manifest.prior.fold_in.files.values())
    for name in (*REQUIRED_FILES, *graphs):
        if name not in manifest.files:
            raise BundleError(f"{manifest_path}: manifest lists no {name}")
    for name, entry in manifest.files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{manifest_path}: manifest lists {name!r}, which is not a file in the bundle")
        file_path = path / name
        if not file_path.is_file():
            raise BundleError(f"{file_path}: missing from bundle; re-export or copy the whole bundle")
        size = file_path.stat().st_size
        if size != entry.bytes:
            raise BundleError(
                f"{file_path}: size {size} != {entry.bytes} recorded (truncated or replaced); "
                "re-export the bundle"
            )
        if verify_checksums and sha256_file(file_path) != entry.sha256:
            raise BundleError(f"{file_path}: sha256 mismatch (corrupt or modified); re-export the bundle")


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Bundle:
    """A verified scoring bundle.

    Use :meth:`load`; the constructor does no checking.

    Attributes
    ----------
    path : Path
        The bundle directory.
    manifest : Manifest
        The validated ``manifest.json`` (``manifest.to_dict()`` gives the JSON object).
    user_encoder, item_encoder : IdEncoder
        The id maps the model was trained with.

    Examples
    --------
    >>> bundle = Bundle.load("bundles/neumf")                 # doctest: +SKIP
    >>> bundle.model_kind, bundle.user_column, bundle.fallback_score    # doctest: +SKIP
    ('neumf', 'user_id', 3.53)
    """

    path: Path
    manifest: Manifest = field(repr=False)
    user_encoder: IdEncoder = field(repr=False)
    item_encoder: IdEncoder = field(repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify_checksums: bool = True) -> Bundle:
        """Open and verify a bundle directory.

        Checks, in order: the directory and manifest exist and parse; the format name and
        version are supported; the manifest is unedited (its ``manifest_sha256``); its fields
        are present and well typed; every listed file is present with its recorded size and
        sha256 (skip the hashing with ``verify_checksums=False``); the id maps read and
        match the recorded counts.

        Parameters
        ----------
        path : path-like
            The bundle directory.
        verify_checksums : bool
            Hash every file and compare with the manifest (sizes are always compared).

        Returns
        -------
        Bundle

        Raises
        ------
        BundleError
            With one line naming the bundle file and what is wrong.
        """
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: bundle directory not found (make one with `recmodels export`)")
        manifest = _read_manifest(path)
        _check_files(path, manifest, verify_checksums)
        encoders = {}
        for role, file_name in ID_FILES.items():
            try:
                encoder = IdEncoder.load(path / file_name, name=role)
            except DataError as exc:
                raise BundleError(str(exc)) from None
            expected = getattr(manifest.ids, role).count
            if len(encoder) != expected:
                raise BundleError(
                    f"{path / file_name}: {len(encoder)} {role} ids but manifest says {expected}"
                )
            encoders[role] = encoder
        return cls(path, manifest, encoders["user"], encoders["item"])

    # -- convenient views of the manifest -----------------------------------------
    @property
    def digest(self) -> str:
        """The manifest's ``manifest_sha256``: identifies this bundle's content."""
        return self.manifest.manifest_sha256

    @property
    def model_path(self) -> Path:
        """Path of the ONNX graph."""
        return self.path / self.manifest.graph.file

    def _graph_path(self, section) -> Path | None:
        return self.path / section.file if section is not None else None

    @property
    def raw_ids_model_path(self) -> Path | None:
        """Path of the raw-id graph (``model_ids.onnx``), or None if the bundle has none."""
        return self._graph_path(self.manifest.graph_raw_ids)

    @property
    def recommend_model_path(self) -> Path | None:
        """Path of the top-k graph (``recommend.onnx``), or None for a bundle exported before it."""
        return self._graph_path(self.manifest.graph_recommend)

    @property
    def retrieve_model_path(self) -> Path | None:
        """Path of the first-stage graph of ``recommend --candidates`` (NeuMF/hybrid), or None."""
        section = self.manifest.graph_recommend
        return self._graph_path(section.retrieve if section is not None else None)

    @property
    def rank_all_model_path(self) -> Path | None:
        """Path of the whole-catalogue dot-product graph (``rank_all.onnx``), or None."""
        section = self.manifest.graph_recommend
        return self._graph_path(section.rank_all if section is not None else None)

    @property
    def prior(self):
        """The manifest's :class:`~recmodels.bundle.manifest.PriorSection`, or None (older bundles)."""
        return self.manifest.prior

    @property
    def model_kind(self) -> str:
        """``"mf"``, ``"neumf"`` or ``"hybrid"``."""
        return self.manifest.model.kind

    @property
    def user_column(self) -> str:
        """The user id column of the training data (the default column to score)."""
        return self.manifest.ids.user.column

    @property
    def item_column(self) -> str:
        """The item id column of the training data (the default column to score)."""
        return self.manifest.ids.item.column

    @property
    def fallback_score(self) -> float:
        """Score given to pairs with an unknown user or item."""
        return float(self.manifest.fallback_score)

    @property
    def rating_range(self) -> tuple[float, float]:
        """``(min, max)`` of the training ratings; an unrecorded bound is -inf / +inf."""
        rating = self.manifest.rating
        low = -math.inf if rating.min is None else float(rating.min)
        high = math.inf if rating.max is None else float(rating.max)
        return low, high

    def summary(self) -> str:
        """A readable multi-line summary of the manifest (what ``recmodels info BUNDLE`` prints)."""
        m = self.manifest
        lines = [
            f"bundle        {self.path}",
            f"format        {m.format} v{m.format_version}",
            f"model         {m.model.kind}" + (" (folded)" if m.model.folded else ""),
            f"graph         {m.graph.file}  opset {m.graph.opset}",
        ]
        for io in m.graph.inputs + m.graph.outputs:
            lines.append(f"  {io.name:<12}{io.dtype} {io.shape}")
        raw = m.graph_raw_ids
        if raw is not None:
            opsets = ", ".join(f"{k} {v}" for k, v in sorted(raw.opset_import.items()))
            lines.append(f"raw-id graph  {raw.file}  ({opsets})")
            for io in raw.inputs + raw.outputs:
                lines.append(f"  {io.name:<12}{io.dtype} {io.shape}")
        rec = m.graph_recommend
        if rec is not None:
            retrieve = f" + {rec.retrieve.file} (first stage of --candidates)" if rec.retrieve else ""
            whole = f" + {rec.rank_all.file} (every item at once)" if rec.rank_all else ""
            lines.append(f"recommend     {rec.file}{retrieve}{whole}")
        for role in ("user", "item"):
            ids = getattr(m.ids, role)
            lines.append(f"{role + 's':<14}{ids.count} ids, column {ids.column!r} ({ids.dtype})")
        rating = m.rating
        lines.append(
            f"rating        {rating.column!r} in [{rating.min}, {rating.max}], "
            f"global mean {_fmt(rating.global_mean)}"
        )
        lines.append(f"fallback      {_fmt(m.fallback_score)} for unknown ids")
        test = m.metrics.get("test")
        if isinstance(test, dict) and test:
            lines.append(
                "test metrics  " + ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
            )
        parity = m.parity
        lines.append(
            f"parity        max |onnx - {parity.reference or 'torch'}| = {parity.max_abs_diff:.2e} over "
            f"{parity.n_pairs} pairs (tolerance {parity.tolerance})"
        )
        lines.append("versions      " + ", ".join(f"{k} {v}" for k, v in sorted(m.versions.items())))
        size = sum(entry.bytes for entry in m.files.values())
        lines.append(f"files         {len(m.files)} ({size / 1e6:.1f} MB), sha256 verified")
        return "\n".join(lines)
