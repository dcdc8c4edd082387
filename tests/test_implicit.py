"""The implicit signal (``ModelConfig.implicit``, SVD++): sums, training, refit, resume, planted gain."""

from __future__ import annotations

import math

import numpy as np
import pytest
from resume_check import uninterrupted_and_resumed

torch = pytest.importorskip("torch")

from recmodels.errors import ConfigError  # noqa: E402
from recmodels.models import ModelConfig, build_model  # noqa: E402
from recmodels.training import TrainConfig, Trainer  # noqa: E402
from recmodels.training.refit import refit_low_rank  # noqa: E402
from recmodels.training.tensors import RatingTensors, predict_tensors  # noqa: E402

CPU = torch.device("cpu")


def random_rows(n_users=30, n_items=20, n=300, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    ratings = rng.integers(1, 6, n).astype(np.float32)
    return users, items, ratings


def naive_parts(model, users, items):
    """The implicit parts of every user's and item's GMF row, one rating at a time (float64)."""
    cfg = model.config
    pairs = sorted(set(zip(users.tolist(), items.tolist(), strict=True)))
    user_part = np.zeros((cfg.n_users, cfg.embedding_dim))
    item_part = np.zeros((cfg.n_items, cfg.embedding_dim))
    if cfg.implicit in ("user", "both"):
        y = model.item_implicit.weight.detach().double().numpy()
        for u in range(cfg.n_users):
            rated = [j for (v, j) in pairs if v == u]
            for j in rated:
                user_part[u] += y[j] / math.sqrt(len(rated))
    if cfg.implicit in ("item", "both"):
        z = model.user_implicit.weight.detach().double().numpy()
        for i in range(cfg.n_items):
            raters = [v for (v, j) in pairs if j == i]
            for v in raters:
                item_part[i] += z[v] / math.sqrt(len(raters))
    return user_part, item_part


@pytest.mark.parametrize("kind", ["mf", "neumf", "hybrid"])
@pytest.mark.parametrize("implicit", ["user", "item", "both"])
def test_sums_and_their_gradient_equal_a_naive_per_rating_computation(kind, implicit):
    users, items, _ = random_rows()
    users = np.concatenate([users, users[:50]])  # repeated pairs count once
    items = np.concatenate([items, items[:50]])
    torch.manual_seed(0)
    extra = {"pretrained_dim": 3} if kind == "hybrid" else {}
    model = build_model(ModelConfig(kind, 30, 20, embedding_dim=4, num_layers=2, implicit=implicit,
                                    init_std=0.3, **extra))
    model.set_rated(torch.as_tensor(users), torch.as_tensor(items))
    user_part, item_part = naive_parts(model, users, items)
    u = torch.as_tensor(users[:120])
    i = torch.as_tensor(items[:120])
    base_u, base_i = model.user_gmf(u).detach(), model.item_gmf(i).detach()
    expected_u = base_u.double() + torch.as_tensor(user_part)[u]
    expected_i = base_i.double() + torch.as_tensor(item_part)[i]

    # three paths: one bag per distinct row (autograd), the whole table (no autograd), a window
    with torch.no_grad():
        table_rows = model.gmf_rows(u, i)
    bag_rows = model.gmf_rows(u, i)
    model.start_implicit_window()
    window_rows = model.gmf_rows(u, i)
    for got_u, got_i in (table_rows, bag_rows, window_rows):
        assert torch.allclose(got_u.double(), expected_u, atol=1e-6)
        assert torch.allclose(got_i.double(), expected_i, atol=1e-6)

    # the window's gradient of the implicit tables is autograd's through the bags
    weights = torch.randn(120, 4, dtype=torch.float32)
    loss = sum(((a * b) * weights).sum() for a, b in [bag_rows])
    tables = model.implicit_tables
    expected = torch.autograd.grad(loss, [t.weight for t in tables])
    window_loss = ((window_rows[0] * window_rows[1]) * weights).sum()
    window_loss.backward()
    for table in tables:
        table.weight.grad = None
    assert model.close_implicit_window()
    for table, want in zip(tables, expected, strict=True):
        want = want.to_dense() if want.is_sparse else want
        assert torch.allclose(table.weight.grad, want, atol=1e-5)


def test_config_checks_and_old_configs_load_without_the_term():
    with pytest.raises(ConfigError, match="implicit must be one of"):
        ModelConfig("mf", 3, 3, implicit="items")
    with pytest.raises(ConfigError, match="rated_pairs"):
        ModelConfig("mf", 3, 3, implicit="item", rated_pairs=-1)
    old = {k: v for k, v in ModelConfig("mf", 3, 3).to_dict().items() if k not in ("implicit", "rated_pairs")}
    assert ModelConfig.from_dict(old).implicit == "none"
    assert "implicit" in ModelConfig.user_fields() and "rated_pairs" not in ModelConfig.user_fields()


def test_a_saved_model_loads_with_its_n():
    users, items, _ = random_rows()
    model = build_model(ModelConfig("neumf", 30, 20, embedding_dim=4, num_layers=2, implicit="both"))
    model.set_rated(torch.as_tensor(users), torch.as_tensor(items))
    fresh = build_model(ModelConfig("neumf", 30, 20, embedding_dim=4, num_layers=2, implicit="both"))
    fresh.load_state_dict(model.state_dict())
    model.eval()
    fresh.eval()
    u, i = torch.as_tensor(users), torch.as_tensor(items)
    with torch.no_grad():
        assert torch.equal(model(u, i), fresh(u, i))


def planted_choice(n_users=120, n_head=40, n_tail=900, per_item=4, match=0.9, noise=1.0, seed=0):
    """Ratings where *who* rated an item tells its kind better than its ratings do.

    Users and items have a kind (+1 / -1); a rating is ``3 + 0.8 * kind_u * kind_i`` plus noise
    (sd ``noise``). Every user rates the ``n_head`` head items (so users' kinds are learnable).
    A tail item's rows pair it with a user of its own kind with probability ``match``, else of the
    other kind: which users rated it reveals its kind, while its few noisy ratings hardly do.
    Training: the head rows and ``per_item`` rows per tail item; validation and test: one row per
    tail item each.
    """
    rng = np.random.default_rng(seed)
    n_items = n_head + n_tail
    kind_u = rng.choice([-1.0, 1.0], n_users)
    kind_i = rng.choice([-1.0, 1.0], n_items)
    pools = {k: np.flatnonzero(kind_u == k) for k in (-1.0, 1.0)}

    def rate(users, items):
        ratings = 3.0 + 0.8 * kind_u[users] * kind_i[items] + rng.normal(0.0, noise, items.size)
        return ratings.astype(np.float32)

    def tail(per):
        items = np.repeat(np.arange(n_head, n_items), per)
        same = rng.random(items.size) < match
        wanted = np.where(same, kind_i[items], -kind_i[items])
        users = np.array([rng.choice(pools[k]) for k in wanted])
        return users, items, rate(users, items)

    head_users = np.repeat(np.arange(n_users), n_head)
    head_items = np.tile(np.arange(n_head), n_users)
    rows = tail(per_item)
    users, items = np.concatenate([head_users, rows[0]]), np.concatenate([head_items, rows[1]])
    train = (users, items, np.concatenate([rate(head_users, head_items), rows[2]]))
    return train, tail(1), tail(1)


def rmse(model, part) -> float:
    pred = predict_tensors(model, torch.as_tensor(part[0]), torch.as_tensor(part[1]))
    return math.sqrt(float(np.mean((pred.double().numpy() - part[2]) ** 2)))


@pytest.mark.parametrize("kind", ["mf", "neumf"])
def test_a_planted_implicit_signal_is_learned(kind):
    train, valid, test = planted_choice()
    results = {}
    for implicit in ("none", "item"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind, 120, 940, embedding_dim=8, num_layers=2, implicit=implicit,
                                        global_mean=float(train[2].mean())))
        trainer = Trainer(model, TrainConfig(epochs=40, num_threads=1, seed=0), CPU, log=None, progress=False)
        trainer.fit(train, valid)
        model.load_state_dict(trainer.final_state_dict())
        results[implicit] = rmse(model, test)
    assert results["item"] < results["none"] - 0.02, results


@pytest.mark.parametrize("kind,implicit", [("mf", "both"), ("neumf", "item"), ("neumf", "user")])
def test_refit_carries_the_implicit_parts(kind, implicit):
    train, valid, _ = planted_choice(per_item=4)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, 120, 940, embedding_dim=8, num_layers=2, implicit=implicit,
                                    global_mean=3.0))
    trainer = Trainer(model, TrainConfig(epochs=3, num_threads=1, refit=False, patience=None), CPU,
                      log=None, progress=False)
    trainer.fit(train, valid)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines = []
    report = refit_low_rank(model, RatingTensors.from_arrays(train, CPU),
                            RatingTensors.from_arrays(valid, CPU), log=lines.append)
    assert report.changed
    # the model's own predictions reproduce the refit's validation figure: the tables hold the
    # rows minus their implicit parts, and the implicit vectors went through the same maps
    assert rmse(model, valid) == pytest.approx(report.valid_rmse_after, abs=1e-5)
    assert report.implicit_kept is not None
    # with the parts the refit also tries lam growing with the rows (tests/test_refit.py: not without)
    assert any("(lam x rows^0.5)" in line for line in lines)
    for name in ("item_implicit", "user_implicit"):
        table = getattr(model, name, None)
        if table is None:
            continue
        assert not torch.equal(before[f"{name}.weight"], table.weight)
        if not report.implicit_kept:  # the refit without the parts won: they are gone
            assert torch.count_nonzero(table.weight) == 0
        assert torch.count_nonzero(table.weight[:, report.rank:]) == 0


@pytest.mark.parametrize("kind,implicit,stop", [("mf", "item", 1), ("mf", "item", 2), ("mf", "item", 3),
                                               ("neumf", "both", 2)])
def test_resume_after_interruption_is_exact(kind, implicit, stop):
    """Also across the implicit probe after epoch 1 (random ratings: it drops the parts)."""
    users, items, ratings = random_rows(n=600)
    data = (users, items, ratings)
    config = TrainConfig(epochs=4, batch_size=64, patience=None, num_threads=1, refit=False)

    def fresh(seed):
        torch.manual_seed(seed)
        return build_model(ModelConfig(kind, 30, 20, embedding_dim=4, num_layers=2, implicit=implicit,
                                       global_mean=3.0))

    full, resumed = uninterrupted_and_resumed(fresh, config, data, data, CPU, stop_epoch=stop)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert any(k.endswith("_implicit.weight") for k in full.model.state_dict())
    timeless = [{k: v for k, v in t.state.implicit_probe.items() if k != "seconds"} for t in (full, resumed)]
    assert timeless[0] == timeless[1]
    if kind == "mf":  # the resume goes on from a model whose parts were dropped
        assert full.state.implicit_probe["kept"] is False
    assert full.best_state_dict.keys() == resumed.best_state_dict.keys()
    assert all(torch.equal(v, resumed.best_state_dict[k]) for k, v in full.best_state_dict.items())


# -- the probe after epoch 1: parts that do not pay are dropped early --------------------------------
def test_the_probe_keeps_parts_that_pay_and_drops_parts_that_do_not():
    """With who-rated-what telling an item's kind (:func:`planted_choice`) the parts stay; on planted
    ratings whose pairs are drawn apart from the ratings they are dropped after epoch 1, and the
    run starts again as a model without them."""
    from recmodels.datasets import make_ratings
    from recmodels.training.implicit_probe import IMPLICIT_PROBE_Z

    signal, valid, _ = planted_choice()
    frame = make_ratings(600, 400, 24000, seed=1).ratings.sample(frac=1.0, random_state=0)
    users = frame["user_id"].astype("category").cat.codes.to_numpy()
    items = frame["item_id"].astype("category").cat.codes.to_numpy()
    rows = (users, items, frame["rating"].to_numpy(np.float32))
    n = len(users) * 9 // 10
    noise, noise_valid = tuple(x[:n] for x in rows), tuple(x[n:] for x in rows)
    verdicts = {}
    for name, (train, held, shape) in {"signal": (signal, valid, (120, 940)),
                                       "no signal": (noise, noise_valid, (600, 400))}.items():
        torch.manual_seed(0)
        model = build_model(ModelConfig("mf", *shape, embedding_dim=8, implicit="item",
                                        global_mean=float(train[2].mean())))
        trainer = Trainer(model, TrainConfig(epochs=4, num_threads=1, seed=0, patience=None), CPU,
                          log=None, progress=False)
        trainer.fit(train, held)
        probe = trainer.state.implicit_probe
        assert probe["epoch"] == 1
        assert probe["kept"] == (probe["z"] >= IMPLICIT_PROBE_Z)  # a clear gain, not a tie
        assert (probe["z"] > 0) == (probe["valid_rmse_with"] < probe["valid_rmse_without"])
        verdicts[name] = probe["kept"]
        assert (torch.count_nonzero(model.user_implicit.weight) > 0) == probe["kept"]
        assert (model.raters_indices.numel() > 0) == probe["kept"]
        # dropped: training started again after epoch 1, which does not count
        assert len(trainer.state.history) == 4 and trainer.state.epoch == 4
        # once judged, the refit does not try again without the parts
        assert trainer.refit_report is None or trainer.refit_report["implicit_kept"] is None
    assert verdicts == {"signal": True, "no signal": False}


# -- export: the known rows' parts folded into the tables, the user part's vectors for fold-in -------
def _implicit_model(kind, implicit, seed=0):
    from test_export import N_ITEMS, N_USERS, make_model

    model = make_model(kind, seed=seed, implicit=implicit)
    users, items, _ = random_rows(N_USERS, N_ITEMS, 400, seed=seed)
    return model.set_rated(torch.as_tensor(users), torch.as_tensor(items)).eval()


@pytest.mark.parametrize("kind", ["mf", "neumf", "hybrid"])
@pytest.mark.parametrize("folded", [True, False])
def test_export_parity_with_the_implicit_term(kind, folded, tmp_path):
    pytest.importorskip("onnxruntime")
    from test_export import N_ITEMS, N_USERS, export_small, make_model

    from recmodels.bundle import Bundle
    from recmodels.export.parity import cpu_session, torch_scores

    model = _implicit_model(kind, "both")
    bundle = Bundle.load(export_small(model, tmp_path / "b", fold=folded))
    assert bundle.manifest.parity.passed and bundle.manifest.parity.max_abs_diff <= 1e-5
    assert bundle.manifest.prior.fold_in.files["user_implicit"] == "fold_user_implicit.npy"
    rng = np.random.default_rng(7)
    u, i = rng.integers(0, N_USERS, 500), rng.integers(0, N_ITEMS, 500)
    got = cpu_session(bundle.model_path).run(["score"], {"user_index": u, "item_index": i})[0]
    expected = torch_scores(model, u, i)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    # the parts change the scores, and the graph is the one a model without them gets
    plain = make_model(kind)
    assert np.max(np.abs(torch_scores(plain, u, i) - expected)) > 1e-3
    onnx = pytest.importorskip("onnx")
    shapes = [{t.name: tuple(t.dims) for t in onnx.load(str(b.model_path)).graph.initializer}
              for b in (bundle, Bundle.load(export_small(plain, tmp_path / "plain", fold=folded)))]
    assert shapes[0] == shapes[1]


def test_a_model_whose_parts_were_dropped_exports_as_one_without_them(tmp_path):
    pytest.importorskip("onnxruntime")
    from test_export import N_ITEMS, N_USERS, export_small

    from recmodels.bundle import Bundle
    from recmodels.export.parity import cpu_session, torch_scores
    from recmodels.training.implicit_probe import remove_parts
    from recmodels.training.refit_sides import _implicit_rows

    model = _implicit_model("neumf", "item")
    rng = np.random.default_rng(7)
    u, i = rng.integers(0, N_USERS, 500), rng.integers(0, N_ITEMS, 500)
    with_parts = torch_scores(model, u, i)
    remove_parts(model)
    assert model.raters_indices.numel() == 0 and _implicit_rows(model, "item") is None
    before = torch_scores(model, u, i)
    assert np.max(np.abs(before - with_parts)) > 1e-4  # the parts are gone from the scores
    bundle = Bundle.load(export_small(model, tmp_path / "b"))
    assert bundle.manifest.parity.passed and bundle.manifest.parity.max_abs_diff <= 1e-5
    assert not (bundle.path / "fold_item_implicit.npy").exists()  # no parts for new items either
    got = cpu_session(bundle.model_path).run(["score"], {"user_index": u, "item_index": i})[0]
    np.testing.assert_allclose(got, before, rtol=0, atol=1e-5)


@pytest.mark.parametrize("side", ["user", "item"])
def test_a_new_row_folded_in_from_history_gets_its_implicit_part(side, tmp_path):
    """A new user (the user part) or new item (the item part, the default) folded in from a
    history: the ridge solve of scoring/history/fold.py centred at the prior row plus
    ``|H|^-1/2 sum`` of its partners' implicit vectors less the trained rows' mean part."""
    import warnings

    import pandas as pd
    from test_export import N_ITEMS, N_USERS, export_small, make_encoders

    from recmodels.bundle import Bundle
    from recmodels.export.parity import cpu_session
    from recmodels.scoring import Scorer

    model = _implicit_model("neumf", side)
    bundle = Bundle.load(export_small(model, tmp_path / "b"))
    fold = bundle.manifest.prior.fold_in
    other = "item" if side == "user" else "user"
    partners = np.array([3, 5, 8, 13, 5, 21, 19])  # partner 5 twice: the part counts it once
    ratings = np.array([4.0, 2.0, 5.0, 3.5, 2.5, 1.0, 4.5])
    partner_ids = make_encoders()[0 if other == "user" else 1].classes_[partners]
    new_id = [123456789] if side == "user" else ["a-new-book"]
    history = pd.DataFrame({"user_id": new_id * partners.size if side == "user" else partner_ids,
                            "book_id": partner_ids if side == "user" else new_id * partners.size,
                            "rating": ratings})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = Scorer(bundle.path, device="cpu", max_unknown_share=1.0, history=history)
    assert scorer.fold.stats[f"{side}s_folded_in"] == 1
    n_own = N_USERS if side == "user" else N_ITEMS
    rows = getattr(scorer.fold, f"{side}s")
    delta = rows.delta[rows.slot[n_own + 1]]

    # numpy reference
    last = {int(j): r for j, r in zip(partners, ratings, strict=True)}  # the last rating of a pair wins
    h = np.array(sorted(last))
    r = np.array([last[j] for j in h])
    part = np.load(bundle.path / fold.files[f"{side}_implicit"]).astype(np.float64)
    features = np.load(bundle.path / fold.files[f"{other}_vectors"]).astype(np.float64)[h]
    if side == "item":  # the trained items' mean part, as the model has it
        assert np.allclose(part[-1], model.implicit_rows("item").double().mean(0).numpy(), atol=1e-6)
    shift = part[h].sum(axis=0) / np.sqrt(h.size) - part[-1]
    prior = np.full(h.size, n_own)
    users, items = (prior, h) if side == "user" else (h, prior)
    base = cpu_session(bundle.model_path).run(["score"], {"user_index": users, "item_index": items})[0]
    base = base.astype(np.float64)
    x = np.c_[features, np.ones(h.size)]
    precision = fold.user_precision if side == "user" else fold.item_precision
    d = np.linalg.solve(x.T @ x + np.diag(precision), x.T @ (r - base - features @ shift))
    np.testing.assert_allclose(delta, d + np.r_[shift, 0.0], atol=1e-6)
    assert np.max(np.abs(shift)) > 1e-2  # the part is not negligible here


def test_the_refit_drops_implicit_parts_that_do_not_pay():
    """Junk implicit vectors, held (no re-solve of the tables): the refit without the parts wins on
    validation, and the model then predicts what it measured with the implicit tables zeroed."""
    train, valid, _ = planted_choice(per_item=4)
    torch.manual_seed(0)
    model = build_model(ModelConfig("mf", 120, 940, embedding_dim=8, implicit="item", global_mean=3.0))
    Trainer(model, TrainConfig(epochs=3, num_threads=1, refit=False, patience=None), CPU, log=None,
            progress=False).fit(train, valid)
    with torch.no_grad():
        model.user_implicit.weight.normal_(0.0, 2.0)
    report = refit_low_rank(model, RatingTensors.from_arrays(train, CPU),
                            RatingTensors.from_arrays(valid, CPU), implicit_lambdas=())
    assert report.changed and report.implicit_kept is False and report.implicit_lambdas == []
    assert torch.count_nonzero(model.user_implicit.weight) == 0
    assert rmse(model, valid) == pytest.approx(report.valid_rmse_after, abs=1e-5)


def _one_window(lr: float):
    """An MF model with the item part whose items have many raters, one batch's window closed:
    (model, optimizers, users, items, ratings)."""
    from recmodels.training.optim import IMPLICIT, OptimizerSet, RowwiseAdagrad

    rng = np.random.default_rng(0)
    n_users, n_items, n = 400, 5, 2000  # ~400 raters per item: their steps add up coherently
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    ratings = (3.0 + rng.normal(0, 0.5, n) + items * 0.3).astype(np.float32)
    torch.manual_seed(0)
    model = build_model(ModelConfig("mf", n_users, n_items, embedding_dim=4, implicit="item",
                                    global_mean=float(ratings.mean())))
    model.set_rated(torch.as_tensor(users), torch.as_tensor(items))
    u, i, r = torch.as_tensor(users), torch.as_tensor(items), torch.as_tensor(ratings)
    table = model.implicit_tables[0]
    optimizers = OptimizerSet({IMPLICIT: RowwiseAdagrad([table.weight], lr=lr)})
    model.train()
    model.start_implicit_window()
    torch.nn.functional.mse_loss(model(u, i), r).backward()
    assert model.close_implicit_window()
    return model, optimizers, u, i, r


def _mse(model, u, i, r) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(u, i), r))


def test_the_implicit_step_is_shortened_where_adagrad_overshoots():
    from recmodels.training.implicit_step import implicit_step

    model, optimizers, u, i, r = _one_window(lr=0.5)
    before = _mse(model, u, i, r)
    full, full_opt, *_ = _one_window(lr=0.5)
    full_opt.step_implicit()  # the plain row-wise Adagrad step
    assert _mse(full, u, i, r) > before  # the setting: Adagrad's whole step makes the fit worse
    share = implicit_step(model, optimizers, u, i, batches=1)
    assert 0.0 < share < 1.0
    # the loss is quadratic in the implicit part (MF), so the searched step is the best along Adagrad's
    assert _mse(model, u, i, r) < min(before, _mse(full, u, i, r))
    assert model.implicit_tables[0].weight.grad is None  # cleared as step_implicit does


def test_a_step_that_does_not_overshoot_is_taken_whole():
    from recmodels.training.implicit_step import implicit_step

    model, optimizers, u, i, r = _one_window(lr=1e-4)
    full, full_opt, *_ = _one_window(lr=1e-4)
    full_opt.step_implicit()
    assert implicit_step(model, optimizers, u, i, batches=1) == 1.0
    torch.testing.assert_close(model.implicit_tables[0].weight, full.implicit_tables[0].weight,
                               rtol=0, atol=0)
