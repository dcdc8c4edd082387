"""Training: learns planted data, optimizers, determinism, resume, divergence, the estimator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from resume_check import Interrupt, uninterrupted_and_resumed

torch = pytest.importorskip("torch")

from recmodels import data as D  # noqa: E402
from recmodels.datasets import make_ratings  # noqa: E402
from recmodels.devices import resolve_device  # noqa: E402
from recmodels.errors import (  # noqa: E402
    ConfigError,
    DataError,
    DeviceError,
    DivergedError,
    NotFittedError,
    RunDirError,
)
from recmodels.models import ModelConfig, build_model  # noqa: E402
from recmodels.runs import load_run  # noqa: E402
from recmodels.training import OPTIMIZERS, RatingModel, TrainConfig, Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dense_split():
    """A small, dense planted dataset where the best achievable RMSE is close to reachable."""
    syn = make_ratings(300, 200, 30000, rank=4, seed=0)
    return syn, D.split_interactions(syn.ratings, seed=0)


@pytest.fixture(autouse=True)
def native_bf16(monkeypatch):
    """Exercise the bf16 path on any CPU (without native bf16 the trainer falls back to fp32)."""
    monkeypatch.setattr("recmodels.training.trainer.supports_bf16", lambda device: True)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    n = 600
    return (rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(1, 6, n).astype(np.float32))


def tiny_model(kind="neumf", seed=0, **options):
    torch.manual_seed(seed)
    return build_model(ModelConfig(kind, 40, 30, embedding_dim=4, num_layers=2,
                                   dropouts=(0.5, 0.3), global_mean=3.0, **options))


def fit_tiny(tiny, config: TrainConfig, kind="neumf", **kwargs) -> Trainer:
    trainer = Trainer(tiny_model(kind), config, CPU, log=None, progress=False, **kwargs)
    trainer.fit(tiny, tiny)
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mf", "neumf"])
def test_training_closes_most_of_the_gap(dense_split, kind):
    syn, split = dense_split
    est = RatingModel(kind, epochs=20, batch_size=1024, num_threads=1).fit(split.train, split.valid)
    rmse = -est.score(split.valid)  # score is higher-is-better: the negative RMSE
    closed = (syn.global_mean_rmse - rmse) / (syn.global_mean_rmse - syn.best_rmse)
    assert closed >= 0.70, f"{kind}: valid rmse {rmse:.4f} closes only {closed:.0%} of the gap"


@pytest.mark.slow
def test_hybrid_beats_neumf_when_item_vectors_carry_signal():
    # ~2 training ratings per item: the pretrained vectors (a noisy linear view of the planted
    # item factors and bias) are the better source of item information
    syn = make_ratings(300, 4000, 12000, rank=2, embedding_dim=8, embedding_noise=0.05, seed=1)
    split = D.split_interactions(syn.ratings, seed=1)
    common = dict(epochs=15, batch_size=512, num_threads=1)
    neumf = RatingModel("neumf", **common).fit(split.train, split.valid)
    hybrid = RatingModel("hybrid", item_embeddings=syn.item_embeddings, **common)
    hybrid.fit(split.train, split.valid)
    assert hybrid.score(split.valid) > neumf.score(split.valid) + 0.005  # negative RMSEs


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(tiny, optimizer):
    trainer = fit_tiny(tiny, TrainConfig(epochs=3, batch_size=64, optimizer=optimizer,
                                         patience=None, device="cpu"))
    history = trainer.state.history
    assert len(history) == 3
    assert history[-1]["train_mse"] < history[0]["train_mse"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_seeded_training_is_deterministic(tiny, precision):
    config = TrainConfig(epochs=2, batch_size=64, device="cpu", precision=precision)
    a, b = fit_tiny(tiny, config), fit_tiny(tiny, config)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert [h["train_mse"] for h in a.state.history] == [h["train_mse"] for h in b.state.history]


def test_bf16_autocasts_the_mlp_only_and_still_learns(tiny):
    trainer = Trainer(tiny_model(), TrainConfig(device="cpu", precision="bf16"), CPU, log=None,
                      progress=False)
    assert trainer.autocast_dtype == torch.bfloat16
    seen = {}
    trainer.model.mlp[1].register_forward_hook(lambda m, i, o: seen.__setitem__("mlp", o.dtype))
    trainer.model.predict.register_forward_hook(lambda m, i, o: seen.__setitem__("predict", o.dtype))
    users, items = torch.as_tensor(tiny[0][:8]), torch.as_tensor(tiny[1][:8])
    with trainer._autocast():
        out = trainer.model(users, items)
    assert (seen["mlp"], seen["predict"], out.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    fp32_config = TrainConfig(device="cpu", precision="fp32")
    assert Trainer(tiny_model(), fp32_config, CPU, log=None).autocast_dtype is None

    config = dict(epochs=3, batch_size=64, patience=None, device="cpu")
    fp32 = fit_tiny(tiny, TrainConfig(precision="fp32", **config))
    bf16 = fit_tiny(tiny, TrainConfig(precision="bf16", **config))
    a, b = fp32.model.mlp[1].weight, bf16.model.mlp[1].weight
    assert not torch.equal(a, b) and bf16.model.mlp[1].weight.dtype == torch.float32
    assert bf16.state.history[-1]["train_mse"] < bf16.state.history[0]["train_mse"]
    assert abs(bf16.state.history[-1]["valid_mse"] - fp32.state.history[-1]["valid_mse"]) < 0.05


def test_bf16_falls_back_to_fp32_without_native_support(monkeypatch):
    monkeypatch.setattr("recmodels.training.trainer.supports_bf16", lambda device: False)
    trainer = Trainer(tiny_model(), TrainConfig(device="cpu", precision="bf16"), CPU, log=None)
    assert trainer.autocast_dtype is None


def test_precision_is_validated_and_old_configs_load_as_fp32():
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")
    assert TrainConfig().precision == "bf16"
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict(old).precision == "fp32"
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


@pytest.mark.parametrize("optimizer,precision", [("rowwise-adagrad", "fp32"), ("rowwise-adagrad", "bf16"),
                                                 ("notebook", "fp32"), ("sparse-adam", "fp32")])
def test_resume_after_interruption_matches_uninterrupted(tiny, optimizer, precision):
    config = TrainConfig(epochs=4, batch_size=64, optimizer=optimizer, patience=None, device="cpu",
                         precision=precision)
    full, resumed = uninterrupted_and_resumed(lambda seed: tiny_model(seed=seed), config, tiny, tiny, CPU)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    drop = ("seconds", "samples_per_s")
    assert ([{k: v for k, v in h.items() if k not in drop} for h in full.state.history]
            == [{k: v for k, v in h.items() if k not in drop} for h in resumed.state.history])


def test_early_stopping_keeps_the_best_epoch(tiny):
    # validation data unrelated to training: valid MSE soon stops improving
    rng = np.random.default_rng(5)
    valid = (tiny[0], tiny[1], rng.integers(1, 6, len(tiny[0])).astype(np.float32))
    trainer = Trainer(tiny_model(), TrainConfig(epochs=30, batch_size=32, patience=2,
                                                embedding_lr=0.5, device="cpu"),
                      CPU, log=None, progress=False)
    state = trainer.fit(tiny, valid)
    assert state.stopped_early and len(state.history) < 30
    assert state.best_epoch == min(state.history, key=lambda h: h["valid_mse"])["epoch"]
    assert len(state.history) == state.best_epoch + 2


def test_nan_loss_raises_diverged(tiny):
    users, items, _ = tiny
    ratings = np.full(len(users), 3e38, dtype=np.float32)
    with pytest.raises(DivergedError, match="diverged"):
        Trainer(tiny_model(), TrainConfig(epochs=2, batch_size=64, device="cpu"), CPU,
                log=None, progress=False).fit((users, items, ratings))


def test_device_resolution():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="not available"):
            resolve_device("cuda:0")


def test_estimator_contract(tmp_path):
    data = make_ratings(120, 80, 3000, seed=2).ratings
    est = RatingModel("mf", epochs=2, batch_size=256)
    assert est.epochs == 2 and not hasattr(est, "model_")
    with pytest.raises(NotFittedError):
        est.predict(data)
    assert est.fit(data) is est
    assert len(est.history_) == 2 and est.user_encoder_ is not None
    unknown = data.head(2).assign(user_id=-12345)
    with pytest.warns(UserWarning, match="2 of 2 rows"):
        np.testing.assert_allclose(est.predict(unknown), est.global_mean_)
    est.save(tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert not run.model.training
    np.testing.assert_allclose(RatingModel.load(tmp_path / "run").predict(data.head(50)),
                               est.predict(data.head(50)))
    with pytest.raises(DataError):
        RatingModel("mf").fit(data.drop(columns="rating"))


def test_load_run_refuses_missing_or_incomplete(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        load_run(tmp_path / "nope")
    data = make_ratings(60, 40, 1000, seed=3).ratings
    RatingModel("mf", epochs=1, batch_size=256).fit(data).save(tmp_path / "run")
    (tmp_path / "run" / "COMPLETE").unlink()
    with pytest.raises(RunDirError, match="incomplete"):
        load_run(tmp_path / "run")


def test_python_api_doc_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/python-api.md has no python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/python-api.md", "exec"), {})


@pytest.mark.parametrize("optimizer", ["rowwise-adagrad", "adam"])
def test_l2_shrinks_the_embeddings(tiny, optimizer):
    def norm(l2):
        config = TrainConfig(epochs=3, batch_size=64, optimizer=optimizer, l2=l2, patience=None,
                             device="cpu")
        trainer = Trainer(tiny_model(implicit="none"), config, CPU, log=None, progress=False)
        trainer.fit(tiny, tiny)
        return trainer.model.user_gmf.weight.norm().item()

    assert norm(1.0) < 0.8 * norm(0.0)


def test_frequency_aware_l2_scales_each_row_by_its_count():
    from recmodels.training.optim import row_decay_scales

    model = tiny_model()
    users = torch.tensor([0, 0, 0, 0, 1])  # counts 4, 1 (mean 2.5 over rows that occur)
    items = torch.tensor([2, 2, 3, 3, 3])
    for exponent, bias in ((0.0, None), (0.5, 0.01), (1.0, None)):
        config = TrainConfig(l2=0.05, l2_frequency_exponent=exponent, l2_bias=bias, batch_size=64)
        scales = row_decay_scales(model, config, users, items)
        user_scale = scales[model.user_gmf.weight]
        # per-lookup multiplier (c / c_mean) ** (exponent - 1): per-epoch penalty ~ c ** exponent
        assert user_scale[0] * 4 / (user_scale[1] * 1) == pytest.approx(4.0 ** exponent)
        bias_scale = scales[model.user_bias.weight]
        ratio = 1.0 if bias is None else bias / 0.05
        assert torch.allclose(bias_scale, user_scale * ratio)


def test_frequency_aware_l2_resume_is_exact(tiny):
    config = TrainConfig(epochs=4, batch_size=64, patience=None, device="cpu", l2=0.5,
                         l2_frequency_exponent=0.0, l2_bias=0.1)
    full = fit_tiny(tiny, config)
    saved = {}

    def stop_after_two(trainer, record, improved):
        saved["last"] = trainer.state_dict()
        if record.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_tiny(tiny, config, on_epoch_end=stop_after_two)
    resumed = Trainer(tiny_model(seed=99), config, CPU, log=None, progress=False)
    resumed.load_state_dict(saved["last"])
    resumed.fit(tiny, tiny)
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


# -- the Polyak cap of row-wise Adagrad (issue 11, item 6) ---------------------------------------
def _sparse_step(error_scale: float, loss: float | None):
    """One RowwiseAdagrad step on a table whose gradients (with repeated rows) scale with the error."""
    from recmodels.training.optim import RowwiseAdagrad

    gen = torch.Generator().manual_seed(0)
    table = torch.nn.Parameter(torch.randn(20, 8, generator=gen) * 0.01)
    rows = torch.randint(0, 20, (64,), generator=gen)  # many repeats, as in a small data set
    values = (torch.randn(64, 8, generator=gen).abs() + 0.5) * 1e-3 * error_scale  # coherent rows
    table.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, table.shape, check_invariants=False)
    before = table.detach().clone()
    opt = RowwiseAdagrad([table], lr=0.1)
    opt.step() if loss is None else opt.step(loss=torch.tensor(loss))
    coalesced = table.grad.coalesce().to_dense()
    change = table.detach() - before
    return change, float(-(coalesced * change).sum())


def test_rowwise_adagrad_step_is_capped_by_the_loss():
    # Unnormalised, the step is the same whatever the size of the error (Adagrad is
    # scale-free): that is what made constant ratings train to a worse model than the mean.
    big, _ = _sparse_step(1.0, None)
    tiny, _ = _sparse_step(1e-3, None)
    assert torch.allclose(big, tiny, rtol=1e-2)  # equal but for eps
    # With the batch loss (which scales with the error squared), the step shrinks with the
    # error, and never predicts a decrease beyond twice the loss (the Polyak step, exact over
    # repeated rows).
    for scale in (1.0, 1e-3):
        loss = 1e-4 * scale ** 2
        change, decrease = _sparse_step(scale, loss)
        assert decrease == pytest.approx(2 * loss, rel=1e-3)
    small_change, _ = _sparse_step(1e-3, 1e-10)
    big_change, _ = _sparse_step(1.0, 1e-4)
    assert float(small_change.norm()) == pytest.approx(1e-3 * float(big_change.norm()), rel=1e-2)
    # a large loss leaves the step as it was
    unchanged, _ = _sparse_step(1.0, 1e6)
    assert torch.equal(unchanged, big)


@pytest.mark.parametrize("kind", ["mf", "neumf"])
def test_constant_ratings_train_to_the_constant(kind):
    rng = np.random.default_rng(0)
    pairs = rng.choice(300 * 200, 5000, replace=False)
    data = pd.DataFrame({"user_id": pairs // 200, "item_id": pairs % 200, "rating": 3.0})
    split = D.split_interactions(data, seed=0)
    est = RatingModel(kind, epochs=2, num_threads=1).fit(split.train, split.valid)
    assert max(h["valid_rmse"] for h in est.history_) < 0.05, est.history_
    assert -est.score(split.test) < 0.05


# -- RatingModel: every config field, the same run directory as train_run ------------------------
def test_rating_model_takes_every_config_field_with_the_dataclass_defaults():
    import dataclasses
    import inspect

    from recmodels.training.setup import DataConfig

    params = inspect.signature(RatingModel).parameters
    expected = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    expected.update({f.name: f.default for f in dataclasses.fields(ModelConfig)
                     if f.name in ModelConfig.user_fields()})
    expected.update({f.name: f.default for f in dataclasses.fields(DataConfig)
                     if f.name in ("user_col", "item_col", "rating_col", "rating_range", "duplicates",
                                   "embedding_fill")})
    assert set(ModelConfig.user_fields()) == {"embedding_dim", "num_layers", "dropouts", "init_std",
                                              "use_bias", "implicit"}
    for name, default in expected.items():
        assert name in params, name
        assert params[name].default == default, name
    est = RatingModel("mf", l2_bias=0.01, precision="fp32", eval_batch_size=128, init_std=0.02)
    assert est.get_params()["l2_bias"] == 0.01 and est.set_params(epochs=3) is est and est.epochs == 3
    with pytest.raises(TypeError, match="colour"):
        RatingModel("mf", colour="blue")
    sklearn_base = pytest.importorskip("sklearn.base")
    copy = sklearn_base.clone(est)  # scikit-learn reads the constructor's signature
    assert copy.get_params() == est.get_params() and copy is not est


def test_rating_model_score_is_higher_is_better_so_grid_search_picks_the_better_setting():
    """scikit-learn maximises ``score``: the negative RMSE makes GridSearchCV choose the good L2 over
    a huge one (with an RMSE it chose the worse)."""
    model_selection = pytest.importorskip("sklearn.model_selection")
    data = make_ratings(150, 80, 4000, seed=0).ratings.sample(frac=1, random_state=0)  # folds share ids
    est = RatingModel("mf", epochs=3, batch_size=512, embedding_dim=8, num_threads=1, refit=False)
    search = model_selection.GridSearchCV(est, {"l2": [1e3, 1e-4]}, cv=2).fit(data)
    means = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"l2": 1e-4}, means
    assert (means < 0).all() and means[1] > means[0] + 0.05, means  # negative RMSEs, clearly apart
    assert search.best_estimator_.score(data) == pytest.approx(-np.sqrt(np.mean(
        (search.best_estimator_.predict(data) - data["rating"].to_numpy()) ** 2)), rel=1e-5)


def test_rating_model_passes_every_field_through(tmp_path):
    data = make_ratings(60, 40, 1500, seed=4).ratings
    est = RatingModel("neumf", epochs=1, batch_size=256, l2_frequency_exponent=1.0, l2_bias=0.01,
                      precision="fp32", eval_batch_size=100, num_layers=2, dropouts=(0.2, 0.1),
                      init_std=0.05, use_bias=False, embedding_dim=4).fit(data)
    # train_config_ is the config used: l2=None resolved from the model and data (issue 12)
    assert est.train_config_ == TrainConfig(epochs=1, batch_size=256, l2_frequency_exponent=1.0,
                                            l2_bias=0.01, precision="fp32", eval_batch_size=100,
                                            l2=est.train_config_.l2)
    assert est.train_config_.l2 is not None
    cfg = est.config_
    assert (cfg.num_layers, cfg.dropouts, cfg.init_std, cfg.use_bias, cfg.embedding_dim) == (
        2, (0.2, 0.1), 0.05, False, 4)
    loaded = RatingModel.load(est.save(tmp_path / "run"))
    assert loaded.get_params() == {**est.get_params(), "item_embeddings": None,
                                   "l2": est.train_config_.l2}


def test_rating_model_save_writes_the_run_directory_train_run_writes(tmp_path):
    from recmodels.training import train_run

    syn = make_ratings(80, 50, 2500, seed=5)
    common = dict(epochs=2, batch_size=256, device="cpu")
    train_run(tmp_path / "cli", data=syn.ratings, model="mf", train_config=TrainConfig(**common),
              quiet=True, echo=None)
    split = D.split_interactions(syn.ratings, seed=0)
    RatingModel("mf", **common).fit(split.train, split.valid).save(tmp_path / "est")

    def keys(run, name):
        return json.loads((tmp_path / run / name).read_text())

    a, b = keys("cli", "config.json"), keys("est", "config.json")
    assert set(a) == set(b)
    for section in ("model", "train", "data"):
        assert set(a[section]) == set(b[section]), section
    assert set(a["data"]["split"]) <= set(b["data"]["split"]) | {"seed", "fractions"}
    assert set(a["data"]["encode"]) == set(b["data"]["encode"])
    ma, mb = keys("cli", "metrics.json"), keys("est", "metrics.json")
    assert set(ma) == set(mb) == {"history", "best_epoch", "valid", "test", "data", "refit", "implicit_probe"}
    assert set(ma["data"]) == set(mb["data"]) and set(ma["valid"]) == set(mb["valid"])
    files = {p.relative_to(tmp_path / "cli").as_posix() for p in (tmp_path / "cli").rglob("*")}
    est_files = {p.relative_to(tmp_path / "est").as_posix() for p in (tmp_path / "est").rglob("*")}
    assert files - est_files == {"last.pt", "split/train.parquet", "split/valid.parquet",
                                 "split/test.parquet"}
    assert load_run(tmp_path / "est").metrics["valid"]["rmse"] > 0


# -- RatingModel input checks (issue 11, items 4, 5, 7) -------------------------------------------
def test_fit_refuses_a_validation_frame_without_known_rows():
    data = make_ratings(60, 40, 1500, seed=6).ratings
    valid = pd.DataFrame({"user_id": [10**9], "item_id": [10**9], "rating": [3.0]})
    with pytest.raises(DataError, match="the validation part has no rows with users and items seen in "
                                        "training"):
        RatingModel("mf", epochs=3).fit(data, valid)


def test_predict_without_an_id_column_is_a_data_error():
    data = make_ratings(60, 40, 1500, seed=6).ratings
    est = RatingModel("mf", epochs=1, batch_size=512).fit(data)
    with pytest.raises(DataError, match="missing id column.*'item_id'.*item_col"):
        est.predict(data[["user_id"]])
    with pytest.raises(DataError, match="'rating'"):
        est.score(data[["user_id", "item_id"]])


def test_predict_counts_the_fallback_rows_and_warns_when_most_are():
    import warnings

    data = make_ratings(60, 40, 1500, seed=6).ratings
    est = RatingModel("mf", epochs=1, batch_size=512).fit(data)
    rows = data.head(10).copy()
    rows.loc[:3, "user_id"] = -1  # 4 of 10 unknown: counted, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(rows)
    assert est.n_fallback_ == 4
    rows.loc[:5, "user_id"] = -1  # 6 of 10
    with pytest.warns(UserWarning, match=r"6 of 10 rows have a user or item not seen in training and got "
                                         r"the fallback 2\.5"):
        out = est.predict(rows, unknown=2.5)
    assert est.n_fallback_ == 6 and (out[:6] == 2.5).all()


def test_progress_bar_reaches_its_total_off_a_terminal():
    import contextlib
    import io

    data = make_ratings(60, 40, 1500, seed=7).ratings
    stream = io.StringIO()  # not a tty, as a notebook's or a log's stderr
    with contextlib.redirect_stderr(stream):
        RatingModel("mf", epochs=2, batch_size=256, progress=True).fit(data)
    text = stream.getvalue()
    for epoch in (1, 2):
        last = text.split(f"epoch {epoch}/2:")[-1].split("\n")[0]
        assert "100%" in last and "1.50k/1.50k" in last, text


def test_load_run_refuses_weights_of_another_shape(tmp_path):
    data = make_ratings(60, 40, 1500, seed=3).ratings
    run_dir = RatingModel("mf", epochs=1, batch_size=256, embedding_dim=4).fit(data).save(tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    config["model"]["embedding_dim"] = 8
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunDirError) as info:
        load_run(run_dir)
    message = str(info.value)
    assert "\n" not in message and "model.pt does not fit" in message and "user_implicit.weight" in message
