"""Training: learns planted data, optimizers, determinism, resume, divergence, the estimator."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

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


def tiny_model(kind="neumf", seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(kind, 40, 30, embedding_dim=4, num_layers=2,
                                   dropouts=(0.5, 0.3), global_mean=3.0))


def fit_tiny(tiny, config: TrainConfig, kind="neumf", **kwargs) -> Trainer:
    trainer = Trainer(tiny_model(kind), config, CPU, log=None, progress=False, **kwargs)
    trainer.fit(tiny, tiny)
    return trainer


@pytest.mark.parametrize("kind", ["mf", "neumf"])
def test_training_closes_most_of_the_gap(dense_split, kind):
    syn, split = dense_split
    est = RatingModel(kind, epochs=20, batch_size=1024, num_threads=1).fit(split.train, split.valid)
    rmse = est.score(split.valid)
    closed = (syn.global_mean_rmse - rmse) / (syn.global_mean_rmse - syn.best_rmse)
    assert closed >= 0.70, f"{kind}: valid rmse {rmse:.4f} closes only {closed:.0%} of the gap"


def test_hybrid_beats_neumf_when_item_vectors_carry_signal():
    # ~2 training ratings per item: the pretrained vectors (a noisy linear view of the planted
    # item factors and bias) are the better source of item information
    syn = make_ratings(300, 4000, 12000, rank=2, embedding_dim=8, embedding_noise=0.05, seed=1)
    split = D.split_interactions(syn.ratings, seed=1)
    common = dict(epochs=15, batch_size=512, num_threads=1)
    neumf = RatingModel("neumf", **common).fit(split.train, split.valid)
    hybrid = RatingModel("hybrid", item_embeddings=syn.item_embeddings, **common)
    hybrid.fit(split.train, split.valid)
    assert hybrid.score(split.valid) < neumf.score(split.valid) - 0.005


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


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("optimizer,precision", [("rowwise-adagrad", "fp32"), ("rowwise-adagrad", "bf16"),
                                                 ("notebook", "fp32"), ("sparse-adam", "fp32")])
def test_resume_after_interruption_matches_uninterrupted(tiny, optimizer, precision):
    config = TrainConfig(epochs=4, batch_size=64, optimizer=optimizer, patience=None, device="cpu",
                         precision=precision)
    full = fit_tiny(tiny, config)

    saved = {}

    def stop_after_two(trainer, record, improved):
        saved["last"] = trainer.state_dict()
        saved["best"] = trainer.best_state_dict
        if record.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit_tiny(tiny, config, on_epoch_end=stop_after_two)
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG state
    resumed = Trainer(tiny_model(seed=99), config, CPU, log=None, progress=False)
    resumed.load_state_dict(saved["last"], best_state_dict=saved["best"])
    resumed.fit(tiny, tiny)
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
        return fit_tiny(tiny, config).model.user_gmf.weight.norm().item()

    assert norm(1.0) < 0.8 * norm(0.0)


def test_frequency_aware_l2_scales_each_row_by_its_count():
    from recmodels.training.optim import row_decay_scales

    model = tiny_model()
    users = torch.tensor([0, 0, 0, 0, 1])  # counts 4, 1 (mean 2.5 over rows that occur)
    items = torch.tensor([2, 2, 3, 3, 3])
    for exponent, bias in ((0.0, None), (0.5, 0.01), (1.0, None)):
        config = TrainConfig(l2=0.05, l2_frequency_exponent=exponent, l2_bias=bias)
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
