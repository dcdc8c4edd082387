"""The scoring bundle: graph + id maps + manifest, verified on load (torch-, onnx- and sklearn-free).

A bundle is a directory::

    model.onnx            the graph (inputs user_index/item_index int64 [batch], output score float32 [batch])
    model.onnx.data       optional ONNX external data, when the weights exceed protobuf's 2 GB
    model_ids.onnx        optional (export --embed-encoders): raw user_id/item_id in, score + known out
    recommend.onnx        a block of users x a tile of items -> each user's top-k (``recmodels recommend``)
    retrieve.onnx         NeuMF/hybrid: the same over the dot-product part only (``--candidates``)
    user_ids.parquet      column ``id``: row position = user index (int64 or string ids)
    item_ids.parquet      column ``id``: row position = item index
    manifest.json         what the files mean, their sha256, versions, metrics and the parity result

``docs/bundle-format.md`` specifies every field. :mod:`.layout` names the files,
:mod:`.manifest` types and validates the manifest (:class:`Manifest`), and :mod:`.load` writes
it (:func:`finalize_bundle`, how the exporter and the test factory finish a bundle) and opens a
bundle (:meth:`Bundle.load`, how every consumer reads one).
"""

from .. import _lazy

# name -> the module that defines it, imported on first use (PEP 562): the CLI's --help reads
# :mod:`.layout` without loading pandas through :mod:`.load`
_EXPORTS = {
    **dict.fromkeys(["FORMAT_NAME", "FORMAT_VERSION", "ID_FILES", "ITEM_IDS_FILE", "MANIFEST_FILE",
                     "MODEL_FILE", "RANK_ALL_FILE", "RAW_IDS_FILE", "RECOMMEND_FILE", "REQUIRED_FILES",
                     "RETRIEVE_FILE", "RUN_CONFIG_FILE", "USER_IDS_FILE"], ".layout"),
    **dict.fromkeys(["Bundle", "finalize_bundle", "path_kind"], ".load"),
    **dict.fromkeys(["FileEntry", "GraphSection", "IdMap", "IdsSection", "InitializerInfo", "Manifest",
                     "ModelSection", "ParitySection", "RankAllGraphSection", "RatingSection",
                     "RawIdGraphSection", "RawIdParity", "RecommendGraphSection", "RecommendParity",
                     "RetrieveGraphSection", "TensorInfo", "manifest_digest"], ".manifest"),
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
