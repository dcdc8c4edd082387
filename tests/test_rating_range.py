"""The rating range (issue 12): read from the training ratings unless ``--rating-range`` is given."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_failure

torch = pytest.importorskip("torch")

from recmodels.cli import cli  # noqa: E402
from recmodels.datasets import make_ratings  # noqa: E402
from recmodels.errors import DataError  # noqa: E402
from recmodels.training import train_run  # noqa: E402
from recmodels.training.setup import DataConfig, build_setup, run_settings  # noqa: E402

FAST = ["--epochs", "1", "--batch-size", "512", "--quiet", "--embedding-dim", "4",
        "--threads", "1", "--model", "mf"]


def ratings(values, seed: int = 0) -> pd.DataFrame:
    """Planted pairs with ratings drawn from ``values`` (all of them present)."""
    frame = make_ratings(60, 40, 1500, embedding_dim=4, seed=seed).ratings
    rng = np.random.default_rng(seed)
    drawn = rng.choice(np.asarray(values, dtype=np.float32), size=len(frame))
    drawn[: len(values)] = values  # every value appears, so the range is known
    return frame.assign(rating=drawn)[["user_id", "item_id", "rating"]]


def invoke(*args):
    return CliRunner().invoke(cli, ["train", *map(str, args)])


def training_min_max(run_dir) -> tuple[float, float]:
    part = pd.read_parquet(run_dir / "split" / "train.parquet")
    return float(part["rating"].min()), float(part["rating"].max())


def test_half_stars_train_with_no_option_and_the_range_comes_from_the_training_part(tmp_path):
    path = tmp_path / "half.csv"
    ratings(np.arange(1, 11) / 2).to_csv(path, index=False)  # 0.5, 1.0, ..., 5.0
    out = tmp_path / "run"
    result = invoke("--data", path, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "config.json").read_text())["data"]
    assert (data["rating_min"], data["rating_max"]) == training_min_max(out)
    assert data["rating_min"] == 0.5 and data["rating_range_inferred"] is True


@pytest.mark.parametrize("values", [[1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 3, 4]])
def test_integer_ratings_take_their_own_min_and_max(values):
    setup = build_setup(data=ratings(values), model="mf", data_config=DataConfig(fractions=(0.8, 0.1, 0.1)))
    train = setup.train.rating
    assert (setup.data_section["rating_min"], setup.data_section["rating_max"]) == \
        (float(train.min()), float(train.max()))
    assert setup.data_section["rating_range_inferred"] is True


def test_an_explicit_range_is_recorded_as_given_and_wider_than_the_data():
    setup = build_setup(data=ratings([2, 3, 4]), model="mf", data_config=DataConfig(rating_range=(1, 5)))
    assert (setup.data_section["rating_min"], setup.data_section["rating_max"]) == (1.0, 5.0)
    assert setup.data_section["rating_range_inferred"] is False


def test_an_explicit_range_rejects_ratings_outside_it_and_names_the_option(tmp_path):
    path = tmp_path / "half.csv"
    ratings([0.5, 1, 3, 5]).to_csv(path, index=False)
    out = tmp_path / "run"
    result = invoke("--data", path, "--out", out, "--rating-range", "1", "5", *FAST)
    assert_one_line_failure(result, "rating 0.5", "outside [1, 5]", "--rating-range", "rating_range")
    assert not out.exists()
    toml = tmp_path / "train.toml"
    toml.write_text(f'data = "{path}"\nrating_range = [1, 5]\n')
    result = invoke("--config", toml, "--out", out, *FAST)
    assert_one_line_failure(result, "rating 0.5", "rating_range")
    with pytest.raises(DataError, match=r"rating 0\.5 .*outside \[1, 5\].*rating_range"):
        build_setup(data=ratings([0.5, 1, 3, 5]), model="mf", data_config=DataConfig(rating_range=(1, 5)))


def test_the_inferred_range_reaches_the_manifest_and_clips_scores(tmp_path):
    from recmodels.export import export_onnx
    from recmodels.scoring import Scorer

    frame = ratings([2, 3, 4])
    # No refit: its ridge rows are too tame to give raw scores outside [2, 4] on this data.
    run = train_run(tmp_path / "run", data=frame, model="mf", echo=None, quiet=True,
                    train_config=_fast_config().replace(refit=False),
                    model_options={"embedding_dim": 4})
    lo, hi = training_min_max(run.path)
    assert (lo, hi) == (2.0, 4.0)
    bundle = export_onnx(run.path, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["rating"]["min"], manifest["rating"]["max"]) == (lo, hi)
    # pairs whose raw scores leave [2, 4] must be clipped to it with --clip
    raw = Scorer(bundle, device="cpu").score_frame(frame)["score"].to_numpy()
    assert ((raw < lo) | (raw > hi)).any(), "no raw score leaves the range: the check below is idle"
    clipped = Scorer(bundle, device="cpu", clip=True).score_frame(frame)["score"].to_numpy()
    np.testing.assert_allclose(clipped, np.clip(raw, lo, hi))
    assert clipped.min() >= lo and clipped.max() <= hi


def _fast_config():
    from recmodels.training import TrainConfig

    return TrainConfig(epochs=2, batch_size=256, num_threads=1, embedding_lr=0.5)


def test_old_run_configs_with_an_explicit_range_still_load():
    config = {"model": {"kind": "mf", "n_users": 3, "n_items": 4, "embedding_dim": 4},
              "train": {"epochs": 1},
              "data": {"user_col": "user_id", "item_col": "item_id", "rating_col": "rating",
                       "rating_min": 1.0, "rating_max": 5.0, "global_mean": 3.0,
                       "sources": ["ratings.csv"], "split": {"method": "random"}}}
    assert run_settings(config)["data"]["rating_range"] == (1.0, 5.0)
    skipped = {**config, "data": {**config["data"], "rating_min": None, "rating_max": None}}
    assert run_settings(skipped)["data"]["rating_range"] is None
    inferred = {**config, "data": {**config["data"], "rating_range_inferred": True}}
    assert run_settings(inferred)["data"]["rating_range"] is None  # read from the data again
