"""Issue 12: the data-scaled batch size, weight averaging, and configs saved before them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from recmodels.errors import ConfigError  # noqa: E402
from recmodels.models import ModelConfig, build_model  # noqa: E402
from recmodels.training import TrainConfig, Trainer, train_run  # noqa: E402
from recmodels.training.config import (  # noqa: E402
    BATCH_STEPS_PER_EPOCH,
    MAX_BATCH_SIZE,
    MIN_BATCH_SIZE,
    data_batch_size,
    default_l2,
)

CPU = torch.device("cpu")


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(1)
    n = 600
    return (rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(1, 6, n).astype(np.float32))


def tiny_model(kind="neumf", seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(kind, 40, 30, embedding_dim=4, num_layers=2,
                                   dropouts=(0.5, 0.3), global_mean=3.0))


# -- batch size from the data --------------------------------------------------------------------
@pytest.mark.parametrize("n_train", [1, 1_000, 25_600, 80_000, 440_000, 1_638_400, 3_080_000])
def test_data_batch_size_is_steps_per_epoch_clamped(n_train):
    batch = data_batch_size(n_train)
    assert MIN_BATCH_SIZE <= batch <= MAX_BATCH_SIZE
    if MIN_BATCH_SIZE < batch < MAX_BATCH_SIZE:
        assert batch == n_train // BATCH_STEPS_PER_EPOCH
    assert batch == min(max(n_train // BATCH_STEPS_PER_EPOCH, MIN_BATCH_SIZE), MAX_BATCH_SIZE)


def test_batch_size_none_is_resolved_by_the_trainer(tiny):
    config = TrainConfig(batch_size=None, epochs=1, device="cpu")
    assert config.resolve(len(tiny[0])).batch_size == data_batch_size(len(tiny[0]))
    assert TrainConfig(batch_size=64).resolve(10**6).batch_size == 64
    trainer = Trainer(tiny_model(), config, CPU, log=None, progress=False)
    trainer.fit(tiny, tiny)
    assert trainer.config.batch_size == data_batch_size(len(tiny[0]))
    # the L2 step in the optimizer uses the resolved batch size
    decay = trainer.optimizers.optimizers["embeddings"].param_groups[0]["weight_decay"]
    assert trainer.config.l2 == default_l2("neumf", len(tiny[0]), 40, 30)
    assert decay == pytest.approx(2 * trainer.config.l2 / trainer.config.batch_size)


def test_train_run_records_the_resolved_batch_size(tmp_path):
    rng = np.random.default_rng(0)
    pairs = rng.choice(60 * 40, 1500, replace=False)
    df = pd.DataFrame({"user_id": pairs // 40, "item_id": pairs % 40,
                       "rating": rng.integers(1, 6, pairs.size).astype(float)})
    run = train_run(tmp_path / "run", data=df, model="mf", quiet=True, echo=None,
                    train_config=TrainConfig(epochs=2, device="cpu", num_threads=1))
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    from recmodels import runs
    from recmodels.data import load_encoded

    n_train = len(load_encoded(runs.split_path(run.path, "train")))
    assert recorded["batch_size"] == data_batch_size(n_train)
    # a recorded config loads back to the same, resolved, settings
    assert TrainConfig.from_dict(recorded).batch_size == recorded["batch_size"]


def test_l2_none_depends_on_the_model_and_the_data_density():
    assert default_l2("neumf", 80_000, 943, 1_650) == default_l2("hybrid", 10, 5, 5)
    dense = default_l2("mf", 80_000, 943, 1_650)
    sparse = default_l2("mf", 440_000, 12_600, 7_400)
    assert sparse > dense  # sparser data: more shrinkage
    assert dense == pytest.approx(5.44 / np.sqrt(80_000 / 943 * 80_000 / 1_650))
    assert default_l2("mf", 10**7, 10, 10) == 0.03 and default_l2("mf", 10, 10, 10) == 0.2
    config = TrainConfig(l2=None, batch_size=None).resolve(80_000, "mf", 943, 1_650)
    assert config.l2 == dense and config.is_resolved
    assert TrainConfig(l2=0.3).resolve(80_000, "mf", 943, 1_650).l2 == 0.3  # given: kept


def test_trainer_picks_the_mf_l2_from_its_training_rows(tiny):
    trainer = Trainer(tiny_model("mf"), TrainConfig(epochs=1, device="cpu"), CPU, log=None,
                      progress=False)
    trainer.fit(tiny, tiny)
    users, items = len(np.unique(tiny[0])), len(np.unique(tiny[1]))
    assert trainer.config.l2 == default_l2("mf", len(tiny[0]), users, items)


def test_configs_saved_before_averaging_load_without_it():
    old = {k: v for k, v in TrainConfig(batch_size=16384).to_dict().items() if k != "average_decay"}
    assert TrainConfig.from_dict(old).average_decay == 0.0
    new = TrainConfig(batch_size=512, average_decay=0.5)
    assert TrainConfig.from_dict(new.to_dict()) == new
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(ConfigError, match="average_decay"):
            TrainConfig(average_decay=bad)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)


# -- weight averaging ----------------------------------------------------------------------------
def test_weight_average_is_the_epoch_ema_of_the_weights(tiny):
    decay = 0.6
    config = TrainConfig(epochs=4, batch_size=64, patience=None, device="cpu", average_decay=decay)
    snapshots = []

    def keep(trainer, record, improved):  # the live weights at the end of each epoch
        snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    trainer = Trainer(tiny_model(), config, CPU, log=None, progress=False, on_epoch_end=keep)
    trainer.fit(tiny)  # no validation: every epoch is "best", so model.pt is the last average
    expected = {k: v for k, v in snapshots[0].items() if v.is_floating_point()}
    for snap in snapshots[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * snap[k] for k in expected}
    for key, value in trainer.best_state_dict.items():
        if not value.is_floating_point():  # the implicit part's N: fixed, kept as it is
            assert torch.equal(value, snapshots[-1][key]), key
            continue
        assert torch.allclose(value, expected[key], atol=1e-6), key
    # the averaged weights are not the last epoch's
    weights = trainer.best_state_dict["user_gmf.weight"]
    assert not torch.allclose(weights, snapshots[-1]["user_gmf.weight"], atol=1e-6)
    # ...and training went on from the live weights
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, snapshots[-1][key]), key


def test_validation_and_best_checkpoint_use_the_averaged_weights(tiny):
    config = TrainConfig(epochs=5, batch_size=64, patience=None, device="cpu", average_decay=0.5)
    trainer = Trainer(tiny_model(), config, CPU, log=None, progress=False)
    state = trainer.fit(tiny, tiny)
    model = tiny_model(seed=3)
    model.load_state_dict(trainer.best_state_dict)
    from recmodels.training.trainer import predict_tensors

    users, items = torch.as_tensor(tiny[0]), torch.as_tensor(tiny[1])
    pred = predict_tensors(model, users, items).double()
    mse = float(torch.mean((pred - torch.as_tensor(tiny[2]).double()) ** 2))
    assert mse == pytest.approx(state.history[state.best_epoch - 1]["valid_mse"], rel=1e-6)


def test_resume_with_weight_averaging_is_exact(tiny, tmp_path):
    config = TrainConfig(epochs=4, batch_size=64, patience=None, device="cpu", average_decay=0.7)
    full = Trainer(tiny_model(), config, CPU, log=None, progress=False)
    full.fit(tiny, tiny)
    saved = {}

    def stop_after_two(trainer, record, improved):
        torch.save(trainer.state_dict(), tmp_path / "last.pt")
        saved["best"] = trainer.best_state_dict
        if record.epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        Trainer(tiny_model(), config, CPU, log=None, progress=False,
                on_epoch_end=stop_after_two).fit(tiny, tiny)
    last = torch.load(tmp_path / "last.pt", weights_only=True)  # no pickle
    assert "average" in last
    resumed = Trainer(tiny_model(seed=99), config, CPU, log=None, progress=False)
    resumed.load_state_dict(last, best_state_dict=saved["best"])
    resumed.fit(tiny, tiny)
    for key, value in full.best_state_dict.items():
        assert torch.equal(value, resumed.best_state_dict[key]), key
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_no_averaging_keeps_the_best_epochs_weights(tiny):
    config = TrainConfig(epochs=3, batch_size=64, patience=None, device="cpu", average_decay=0.0)
    trainer = Trainer(tiny_model(), config, CPU, log=None, progress=False)
    trainer.fit(tiny)
    assert trainer.average is None and "average" not in trainer.state_dict()
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, trainer.best_state_dict[key]), key


# -- the CLI and TOML set the new fields; config.json records the resolved ones ------------------
def test_cli_and_toml_set_the_accuracy_options(tmp_path):
    from click.testing import CliRunner

    from recmodels.cli import cli

    rng = np.random.default_rng(2)
    pairs = rng.choice(50 * 30, 900, replace=False)
    data = tmp_path / "ratings.csv"
    pd.DataFrame({"user_id": pairs // 30, "item_id": pairs % 30,
                  "rating": rng.integers(1, 6, pairs.size)}).to_csv(data, index=False)
    toml = tmp_path / "train.toml"
    toml.write_text("average_decay = 0.5\nl2_frequency_exponent = 0.25\nepochs = 2\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(toml), "--data", str(data),
                                      "--model", "mf", "--embedding-dim", "4", "--quiet",
                                      "--threads", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert recorded["average_decay"] == 0.5 and recorded["l2_frequency_exponent"] == 0.25
    assert isinstance(recorded["batch_size"], int) and isinstance(recorded["l2"], float)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--average-decay", "1",
                                      "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "average-decay" in result.output
