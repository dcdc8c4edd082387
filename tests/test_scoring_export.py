"""End to end with the real exporter: train tiny (torch) -> export -> score == torch within 1e-5."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
export = pytest.importorskip("recmodels.export")
models = pytest.importorskip("recmodels.models")

from recmodels.encoders import IdEncoder  # noqa: E402
from recmodels.scoring import Scorer  # noqa: E402


def tiny_trained(kind: str, n_users=30, n_items=20, steps=30):
    torch.manual_seed(0)
    config = models.ModelConfig(kind, n_users=n_users, n_items=n_items, embedding_dim=4,
                                num_layers=2, dropouts=(0.1, 0.1), global_mean=3.5)
    model = models.build_model(config)
    rng = np.random.default_rng(0)
    u = torch.as_tensor(rng.integers(0, n_users, 512))
    i = torch.as_tensor(rng.integers(0, n_items, 512))
    r = torch.as_tensor(rng.integers(1, 6, 512), dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(u, i), r)
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("kind,fold", [("mf", True), ("neumf", True), ("neumf", False)])
def test_exported_bundle_scores_like_torch(tmp_path, kind, fold):
    model = tiny_trained(kind)
    users = IdEncoder("user").fit(np.arange(30) * 11 + 7)
    items = IdEncoder("item").fit([f"book{k}" for k in range(20)])
    data = {"user_col": "user_id", "item_col": "book_id", "rating_col": "rating",
            "rating_min": 1.0, "rating_max": 5.0, "global_mean": 3.5}
    bundle = export.export_model(model, users, items, tmp_path / "b", data=data, fold=fold,
                                 parity_pairs=500)
    rng = np.random.default_rng(1)
    ui, ii = rng.integers(0, 30, 5000), rng.integers(0, 20, 5000)
    df = pd.DataFrame({"user_id": users.classes_[ui], "book_id": items.classes_[ii]})
    df.loc[::50, "book_id"] = "never-seen"
    out = Scorer(bundle, device="cpu", batch_size=999).score_frame(df)
    with torch.no_grad():
        expected = model(torch.as_tensor(ui), torch.as_tensor(ii)).numpy()
    known = out["known"].to_numpy()
    assert (~known).sum() == 100
    np.testing.assert_allclose(out["score"].to_numpy()[known], expected[known], atol=1e-5, rtol=0)
    # an unknown item with a known user: the model's score for the prior item (the items' mean rows)
    config = models.ModelConfig(**{**model.config.__dict__, "n_items": 21})
    averaged = models.build_model(config)
    averaged.load_state_dict({k: torch.cat([v, v.mean(0, keepdim=True)]) if k.startswith("item_") else v
                              for k, v in model.state_dict().items()})
    with torch.no_grad():
        prior = averaged.eval()(torch.as_tensor(ui[~known]), torch.full(((~known).sum(),), 20)).numpy()
    np.testing.assert_allclose(out["score"].to_numpy()[~known], prior, atol=1e-5, rtol=0)
    assert (out["score"].to_numpy()[~known] != np.float32(3.5)).all()
