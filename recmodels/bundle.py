"""The scoring bundle: graph + id maps + manifest, verified on load (torch-free).

A bundle is a directory::

    model.onnx            the graph (inputs user_index/item_index int64 [batch], output score float32 [batch])
    model.onnx.data       optional ONNX external data, when the weights exceed protobuf's 2 GB
    model_ids.onnx        optional (export --embed-encoders): raw user_id/item_id in, score + known out
    user_ids.parquet      column ``id``: row position = user index (int64 or string ids)
    item_ids.parquet      column ``id``: row position = item index
    manifest.json         what the files mean, their sha256, versions, metrics and the parity result

``docs/bundle-format.md`` specifies every field. :func:`finalize_bundle` is how the
exporter writes the manifest; :meth:`Bundle.load` is how every consumer reads a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .encoders import IdEncoder
from .errors import BundleError, DataError
from .fileio import sha256_file, write_json

FORMAT_NAME = "recmodels-bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
RAW_IDS_FILE = "model_ids.onnx"
USER_IDS_FILE = "user_ids.parquet"
ITEM_IDS_FILE = "item_ids.parquet"
REQUIRED_FILES = (MODEL_FILE, USER_IDS_FILE, ITEM_IDS_FILE)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _manifest_digest(manifest: dict) -> str:
    """sha256 over the canonical JSON of the manifest without its own digest field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def finalize_bundle(directory: str | os.PathLike, manifest: dict) -> dict:
    """Checksum every file in ``directory`` and write ``manifest.json`` beside them.

    Parameters
    ----------
    directory : path-like
        A (staging) directory already holding the graph and the id maps.
    manifest : dict
        Every manifest field except ``format``, ``format_version``, ``files`` and
        ``manifest_sha256``, which this function fills in.

    Returns
    -------
    dict
        The manifest as written.
    """
    directory = Path(directory)
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise BundleError(f"{directory}: cannot finalize bundle, missing {', '.join(missing)}")
    files = {}
    for path in sorted(directory.iterdir()):
        if path.name == MANIFEST_FILE or path.name.startswith("."):
            continue
        files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {**manifest, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "files": files}
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    write_json(directory / MANIFEST_FILE, manifest)
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A verified scoring bundle.

    Use :meth:`load`; the constructor does no checking.

    Attributes
    ----------
    path : Path
        The bundle directory.
    manifest : dict
        The parsed ``manifest.json``.
    user_encoder, item_encoder : IdEncoder
        The id maps the model was trained with.
    """

    path: Path
    manifest: dict = field(repr=False)
    user_encoder: IdEncoder = field(repr=False)
    item_encoder: IdEncoder = field(repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike, *, verify_checksums: bool = True) -> Bundle:
        """Open and verify a bundle directory.

        Checks, in order: the directory and manifest exist and parse; the format name and
        version are supported; the manifest is unedited; every listed file is present
        with its recorded size and sha256 (skip the hashing with
        ``verify_checksums=False``); the id maps read and match the recorded counts.

        Raises
        ------
        BundleError
            With one line naming the bundle and what is wrong.
        """
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: bundle directory not found (make one with `recmodels export`)")
        manifest_path = path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise BundleError(f"{path}: not a recmodels bundle (no {MANIFEST_FILE})")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise BundleError(f"{manifest_path}: not a recmodels bundle manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise BundleError(
                f"{path}: bundle format version {version!r} is not supported by this recmodels "
                f"(reads version {FORMAT_VERSION}); upgrade recmodels or re-export the bundle"
            )
        if manifest.get("manifest_sha256") != _manifest_digest(manifest):
            raise BundleError(f"{manifest_path}: manifest was modified after export (checksum mismatch)")
        files = manifest.get("files") or {}
        for name in REQUIRED_FILES:
            if name not in files:
                raise BundleError(f"{manifest_path}: manifest lists no {name}")
        for name, meta in files.items():
            file_path = path / name
            if not file_path.is_file():
                raise BundleError(f"{file_path}: missing from bundle; re-export or copy the whole bundle")
            if file_path.stat().st_size != meta.get("bytes"):
                raise BundleError(
                    f"{file_path}: size {file_path.stat().st_size} != {meta.get('bytes')} recorded "
                    "(truncated or replaced); re-export the bundle"
                )
            if verify_checksums and sha256_file(file_path) != meta.get("sha256"):
                raise BundleError(f"{file_path}: sha256 mismatch (corrupt or modified); re-export the bundle")
        encoders = {}
        for role, file_name in (("user", USER_IDS_FILE), ("item", ITEM_IDS_FILE)):
            try:
                encoder = IdEncoder.load(path / file_name, name=role)
            except DataError as exc:
                raise BundleError(str(exc)) from None
            expected = manifest.get("ids", {}).get(role, {}).get("count")
            if expected is not None and len(encoder) != expected:
                raise BundleError(
                    f"{path / file_name}: {len(encoder)} {role} ids but manifest says {expected}"
                )
            encoders[role] = encoder
        return cls(path, manifest, encoders["user"], encoders["item"])

    # -- convenient views of the manifest -----------------------------------------
    @property
    def model_path(self) -> Path:
        """Path of the ONNX graph."""
        return self.path / self.manifest.get("graph", {}).get("file", MODEL_FILE)

    @property
    def raw_ids_model_path(self) -> Path | None:
        """Path of the raw-id graph (``model_ids.onnx``), or None if the bundle has none."""
        section = self.manifest.get("graph_raw_ids")
        return self.path / section.get("file", RAW_IDS_FILE) if section else None

    @property
    def model_kind(self) -> str:
        return self.manifest["model"]["kind"]

    @property
    def user_column(self) -> str:
        return self.manifest["ids"]["user"]["column"]

    @property
    def item_column(self) -> str:
        return self.manifest["ids"]["item"]["column"]

    @property
    def fallback_score(self) -> float:
        """Score given to pairs with an unknown user or item."""
        return float(self.manifest["fallback_score"])

    @property
    def rating_range(self) -> tuple[float, float]:
        rating = self.manifest["rating"]
        return float(rating["min"]), float(rating["max"])

    def summary(self) -> str:
        """A readable multi-line summary of the manifest (what ``recmodels info BUNDLE`` prints)."""
        m = self.manifest
        ids = m.get("ids", {})
        graph = m.get("graph", {})
        rating = m.get("rating", {})
        parity = m.get("parity", {})
        lines = [
            f"bundle        {self.path}",
            f"format        {m['format']} v{m['format_version']}",
            f"model         {m['model']['kind']}" + (" (folded)" if m["model"].get("folded") else ""),
            f"graph         {graph.get('file', MODEL_FILE)}  opset {graph.get('opset')}",
        ]
        for io in graph.get("inputs", []) + graph.get("outputs", []):
            lines.append(f"  {io['name']:<12}{io['dtype']} {io['shape']}")
        raw = m.get("graph_raw_ids")
        if raw:
            opsets = ", ".join(f"{k} {v}" for k, v in sorted((raw.get("opset_import") or {}).items()))
            lines.append(f"raw-id graph  {raw.get('file')}  ({opsets})")
            for io in raw.get("inputs", []) + raw.get("outputs", []):
                lines.append(f"  {io['name']:<12}{io['dtype']} {io['shape']}")
        for role in ("user", "item"):
            r = ids.get(role, {})
            lines.append(
                f"{role + 's':<14}{r.get('count')} ids, column {r.get('column')!r} ({r.get('dtype')})"
            )
        lines.append(
            f"rating        {rating.get('column')!r} in [{rating.get('min')}, {rating.get('max')}], "
            f"global mean {_fmt(rating.get('global_mean'))}"
        )
        lines.append(f"fallback      {_fmt(m.get('fallback_score'))} for unknown ids")
        test = (m.get("metrics") or {}).get("test")
        if test:
            lines.append(
                "test metrics  " + ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
            )
        if parity:
            lines.append(
                f"parity        max |onnx - torch| = {parity.get('max_abs_diff'):.2e} over "
                f"{parity.get('n_pairs')} pairs (tolerance {parity.get('tolerance')})"
            )
        versions = m.get("versions", {})
        lines.append("versions      " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
        size = sum(f.get("bytes", 0) for f in m.get("files", {}).values())
        lines.append(f"files         {len(m.get('files', {}))} ({size / 1e6:.1f} MB), sha256 verified")
        return "\n".join(lines)
