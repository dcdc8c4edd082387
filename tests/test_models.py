"""Contract tests every rating model passes (written once, parametrized over the kinds)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recmodels.errors import ConfigError  # noqa: E402
from recmodels.models import MODEL_KINDS, ModelConfig, build_model  # noqa: E402
from recmodels.models.layers import Dropout  # noqa: E402
from recmodels.training import TrainConfig, Trainer  # noqa: E402

N_USERS, N_ITEMS, PRETRAINED_DIM = 13, 11, 3


def make_config(kind: str, **changes) -> ModelConfig:
    options = dict(embedding_dim=4, num_layers=2, dropouts=(0.5, 0.3), global_mean=3.0,
                   pretrained_dim=PRETRAINED_DIM if kind == "hybrid" else 0)
    options.update(changes)
    return ModelConfig(kind, N_USERS, N_ITEMS, **options)


def make_model(kind: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    pretrained = None
    if kind == "hybrid":
        pretrained = np.random.default_rng(seed).normal(size=(N_ITEMS, PRETRAINED_DIM))
    return build_model(make_config(kind, **changes), pretrained=pretrained)


def all_pairs():
    users, items = np.meshgrid(np.arange(N_USERS), np.arange(N_ITEMS), indexing="ij")
    return torch.from_numpy(users.ravel()), torch.from_numpy(items.ravel())


@pytest.fixture(params=MODEL_KINDS)
def kind(request):
    return request.param


def test_forward_shape_and_dtype(kind):
    model = make_model(kind)
    users, items = all_pairs()
    out = model(users, items)
    assert out.shape == (N_USERS * N_ITEMS,)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_single_equals_batch_in_eval_mode(kind):
    model = make_model(kind).eval()
    with torch.no_grad():
        for p in model.parameters():  # make every term matter
            p.add_(0.3 * torch.randn_like(p))
    users, items = all_pairs()
    with torch.no_grad():
        batch = model(users, items)
        single = torch.stack([model(users[i:i + 1], items[i:i + 1])[0] for i in range(len(users))])
    torch.testing.assert_close(single, batch, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(kind):
    model = make_model(kind, seed=1).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    config = ModelConfig.from_dict(json.loads(json.dumps(model.config.to_dict())))
    assert config == model.config
    rebuilt = build_model(config)
    rebuilt.load_state_dict(state)
    rebuilt.eval()
    users, items = all_pairs()
    with torch.no_grad():
        assert torch.equal(model(users, items), rebuilt(users, items))


def test_seeded_initialisation_is_deterministic(kind):
    a, b, c = make_model(kind, seed=5), make_model(kind, seed=5), make_model(kind, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_every_parameter_gets_a_gradient(kind):
    model = make_model(kind).train()
    users, items = all_pairs()
    model.set_rated(users[::3], items[::3])  # N for the implicit part (default "item")
    model(users, items).pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bias_terms_are_optional(kind):
    with_bias, without = make_model(kind, use_bias=True), make_model(kind, use_bias=False)
    assert "user_bias.weight" in with_bias.state_dict()
    assert "user_bias.weight" not in without.state_dict()
    assert "global_mean" in without.state_dict()


def test_global_mean_is_the_untrained_prediction(kind):
    model = make_model(kind, init_std=1e-6).eval()
    if kind == "hybrid":
        model.set_pretrained(np.zeros((N_ITEMS, PRETRAINED_DIM)))
    users, items = all_pairs()
    with torch.no_grad():
        torch.testing.assert_close(model(users, items), torch.full((len(users),), 3.0),
                                   atol=1e-3, rtol=0)


def test_training_leaves_pretrained_buffer_frozen():
    model = make_model("hybrid")
    names = [n for n, _ in model.named_parameters()]
    assert "item_pretrained" not in names
    assert "item_pretrained" in model.state_dict()
    before = model.item_pretrained.clone()
    other_before = model.item_gmf.weight.detach().clone()
    rng = np.random.default_rng(0)
    data = (rng.integers(0, N_USERS, 200), rng.integers(0, N_ITEMS, 200),
            rng.integers(1, 6, 200).astype(np.float32))
    Trainer(model, TrainConfig(epochs=2, batch_size=32, device="cpu"), torch.device("cpu"),
            log=None, progress=False).fit(data)
    assert torch.equal(model.item_pretrained, before)
    assert not torch.equal(model.item_gmf.weight, other_before)


def test_notebook_sizes():
    config = ModelConfig("neumf", 100, 50)
    assert config.mlp_embedding_dim == 128
    assert config.mlp_layer_sizes == (256, 128, 64, 32)
    model = build_model(config)
    linears = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(256, 128), (128, 64), (64, 32)]
    assert isinstance(model.mlp[0], torch.nn.Dropout) and model.mlp[0].p == 0.5
    assert model.predict.in_features == 64
    hybrid = build_model(ModelConfig("hybrid", 100, 50, pretrained_dim=64))
    assert hybrid.predict.in_features == 128  # the notebook's 4 * embedding_dim


@pytest.mark.parametrize("changes, fragment", [
    ({"kind": "svd"}, "model kind"),
    ({"dropouts": (0.5,)}, "dropouts"),
    ({"dropouts": (0.5, 1.0)}, "dropouts"),
    ({"n_users": 0}, "n_users"),
    ({"embedding_dim": 2.5}, "embedding_dim"),
    ({"pretrained_dim": 3}, "pretrained_dim"),
    ({"use_bias": "no"}, "use_bias"),
    ({"init_std": True}, "init_std"),
    ({"dropouts": "0.5,0.3"}, "dropouts"),
])
def test_invalid_config_raises(changes, fragment):
    options = dict(kind="neumf", n_users=3, n_items=3, num_layers=2, dropouts=(0.5, 0.3))
    options.update(changes)
    with pytest.raises(ConfigError, match=fragment):
        ModelConfig(**options)


def test_default_dropouts_follow_num_layers_and_old_configs_load_identically():
    from recmodels.models import default_dropouts

    assert ModelConfig("neumf", 3, 3).dropouts == (0.5, 0.3, 0.3) == default_dropouts(3)
    assert ModelConfig("neumf", 3, 3, num_layers=1).dropouts == (0.5,)
    assert ModelConfig("neumf", 3, 3, num_layers=4).dropouts == (0.5, 0.3, 0.3, 0.3)
    assert ModelConfig("neumf", 3, 3, num_layers=2, dropouts=[0.1, 0.2]).dropouts == (0.1, 0.2)
    saved = ModelConfig("neumf", 3, 3, num_layers=2).to_dict()
    assert saved["dropouts"] == [0.5, 0.3]  # written out as the list, as before
    old = {"kind": "mf", "n_users": 3, "n_items": 3, "embedding_dim": 32, "num_layers": 3,
           "dropouts": [0.5, 0.3, 0.3], "init_std": 0.01, "pretrained_dim": 0, "use_bias": True,
           "global_mean": 3.5}  # a config.json written before the rule moved here
    assert ModelConfig.from_dict(old).to_dict() == old
    assert ModelConfig.user_fields() == ("embedding_dim", "num_layers", "dropouts", "init_std", "use_bias",
                                         "implicit")


def test_hybrid_needs_pretrained_dim():
    with pytest.raises(ConfigError, match="pretrained_dim"):
        ModelConfig("hybrid", 3, 3)
    with pytest.raises(ConfigError, match="unknown model config"):
        ModelConfig.from_dict({**ModelConfig("mf", 3, 3).to_dict(), "colour": 1})


def test_dropout_rate_and_eval_identity():
    torch.manual_seed(0)
    layer = Dropout(p=0.3)
    x = torch.ones(200, 500)
    out = layer.train()(x)
    assert abs((out == 0).float().mean().item() - 0.3) < 0.01
    assert torch.allclose(out.mean(), torch.tensor(1.0), atol=0.02)
    assert torch.equal(layer.eval()(x), x)
