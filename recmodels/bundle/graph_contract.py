"""The graphs' tensor names: a contract between the exporter that writes them and the scorers
that feed them (torch-free; like the file names in :mod:`.layout`).

``model.onnx`` scores index pairs; ``model_ids.onnx`` the same pairs by raw id; the recommend
graphs (``recommend.onnx``, ``retrieve.onnx``, ``rank_all.onnx``) return each user's top ``k``.
"""

from __future__ import annotations

USER_INDEX = "user_index"
"""int64 [batch] (scoring) or [users] (recommend): rows of the user id map."""
ITEM_INDEX = "item_index"
"""int64 [batch] (scoring) or [items] (recommend's item tile): rows of the item id map."""
USER_ID = "user_id"
"""``model_ids.onnx``: raw user ids (int64 or string [batch])."""
ITEM_ID = "item_id"
"""``model_ids.onnx``: raw item ids (int64 or string [batch])."""
SCORE = "score"
"""float32 [batch]: the predicted rating."""
KNOWN = "known"
"""``model_ids.onnx``: bool [batch], both ids in the maps (else ``score`` is the fallback)."""
EXCLUDE = "exclude"
"""int64 [excluded, 2]: (user row in the block, item column) pairs never returned."""
K = "k"
"""int64 [1]: how many items per user."""
TOP_SCORE = "top_score"
"""float32 [users, k]: the best scores, best first."""
TOP_POSITION = "top_position"
"""int64 [users, k]: their columns in the item tile (the catalogue for ``rank_all.onnx``)."""

SCORE_INPUTS = (USER_INDEX, ITEM_INDEX)
RAW_ID_INPUTS = (USER_ID, ITEM_ID)
RAW_ID_OUTPUTS = (SCORE, KNOWN)
RECOMMEND_INPUTS = (USER_INDEX, ITEM_INDEX, EXCLUDE, K)
RANK_ALL_INPUTS = (USER_INDEX, EXCLUDE, K)
TOP_K_OUTPUTS = (TOP_SCORE, TOP_POSITION)
