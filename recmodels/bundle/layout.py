"""What a bundle directory holds: the format name and version, and every file name in it.

These are the bundle's names; the run directory's own names live in :mod:`recmodels.runs`.
"""

from __future__ import annotations

FORMAT_NAME = "recmodels-bundle"
FORMAT_VERSION = 1
"""The bundle format version this recmodels writes and the highest it reads."""

MANIFEST_FILE = "manifest.json"
RUN_CONFIG_FILE = "config.json"
"""What marks a run directory (``recmodels.runs.CONFIG_FILE``): named here so that the torch-free
side can tell a run from a bundle (:func:`recmodels.bundle.path_kind`)."""
MODEL_FILE = "model.onnx"
RAW_IDS_FILE = "model_ids.onnx"
RECOMMEND_FILE = "recommend.onnx"
RETRIEVE_FILE = "retrieve.onnx"
RANK_ALL_FILE = "rank_all.onnx"
USER_IDS_FILE = "user_ids.parquet"
ITEM_IDS_FILE = "item_ids.parquet"
REQUIRED_FILES = (MODEL_FILE, USER_IDS_FILE, ITEM_IDS_FILE)
ID_FILES = {"user": USER_IDS_FILE, "item": ITEM_IDS_FILE}
"""Role -> the Parquet id map's file name."""
FOLD_FILES = {
    "user_vectors": "fold_user_vectors.npy",
    "item_vectors": "fold_item_vectors.npy",
    "user_counts": "fold_user_counts.npy",
    "item_counts": "fold_item_counts.npy",
    "item_content": "fold_item_content.npy",
    "user_implicit": "fold_user_implicit.npy",
    "item_implicit": "fold_item_implicit.npy",
}
"""Role -> file name of the fold-in arrays (``manifest.prior.fold_in.files``; NumPy ``.npy``): the
effective GMF rows, the training counts, a hybrid bundle's content rows (``--item-embeddings``) and
the implicit user and item parts' vectors (``recmodels.export.prior``)."""
