"""``recmodels tune`` / ``recmodels.tuning.tune`` (issue 12): tiny planted data, a few epochs."""

from __future__ import annotations

import csv
import json
import math
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_failure

pytest.importorskip("torch")
pytest.importorskip("optuna")

from recmodels.cli import cli  # noqa: E402
from recmodels.datasets import make_ratings  # noqa: E402
from recmodels.errors import ConfigError  # noqa: E402
from recmodels.runs import load_run  # noqa: E402
from recmodels.training import TrainConfig  # noqa: E402
from recmodels.tuning import parameter_names, parse_space, tune  # noqa: E402

FAST = ["--epochs", "2", "--batch-size", "512", "--threads", "1", "--quiet"]
FAST_CONFIG = TrainConfig(epochs=2, batch_size=512, num_threads=1)


@pytest.fixture(scope="module")
def synthetic():
    return make_ratings(120, 80, 3000, embedding_dim=4, seed=0)


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory, synthetic):
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    synthetic.ratings.to_csv(path, index=False)
    return path


def invoke(*args):
    return CliRunner().invoke(cli, ["tune", *map(str, args)])


def read_rows(out):
    with open(out / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_three_trials_write_a_best_run_that_exports_and_scores(ratings_csv, synthetic, tmp_path):
    out = tmp_path / "tuned"
    result = invoke("--data", ratings_csv, "--model", "mf", "--trials", "3", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert [int(r["trial"]) for r in rows] == [0, 1, 2]
    complete = {int(r["trial"]): float(r["valid_rmse"]) for r in rows if r["state"] == "complete"}
    assert complete, rows
    best_trial = min(complete, key=complete.get)
    summary = json.loads((out / "trials.json").read_text())
    assert summary["best"]["trial"] == best_trial and len(summary["trials"]) == 3
    assert all(len(r["valid_rmse_by_epoch"]) == int(r["epochs"]) for r in summary["trials"])
    assert (out / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "study.db").is_file()
    # the best run is a normal run directory: the same weights as its trial's, same metrics
    best = load_run(out / "best")
    trial = load_run(out / "trials" / f"{best_trial:04d}")
    assert math.isclose(best.metrics["valid"]["rmse"], complete[best_trial], rel_tol=1e-9)
    for name, tensor in trial.model.state_dict().items():
        assert np.array_equal(tensor.numpy(), best.model.state_dict()[name].numpy()), name
    assert f"best trial {best_trial}" in result.output and str(out / "best") in result.output
    # ... which `recmodels export` takes and the scorer scores
    bundle = tmp_path / "bundle"
    exported = CliRunner().invoke(cli, ["export", str(out / "best"), "--out", str(bundle)])
    assert exported.exit_code == 0, exported.output
    from recmodels.scoring import Scorer

    pairs = synthetic.ratings.head(50)
    scores = Scorer(bundle, device="cpu").score_frame(pairs)
    assert len(scores) == 50 and scores["known"].all() and np.isfinite(scores["score"]).all()
    import torch

    users = best.user_encoder.transform(pairs["user_id"])
    items = best.item_encoder.transform(pairs["item_id"])
    with torch.no_grad():
        expected = best.model(torch.as_tensor(users), torch.as_tensor(items)).numpy()
    np.testing.assert_allclose(scores["score"].to_numpy(), expected, atol=1e-4)
    # a rerun without --resume/--overwrite refuses, and changes nothing
    before = (out / "trials.csv").read_bytes()
    again = invoke("--data", ratings_csv, "--model", "mf", "--trials", "3", "--out", out, *FAST)
    assert_one_line_failure(again, str(out), "already exists", "--resume", "--overwrite")
    assert (out / "trials.csv").read_bytes() == before


def test_a_resumed_search_continues_its_trial_count(synthetic, tmp_path):
    out = tmp_path / "tuned"
    common = dict(data=synthetic.ratings, model="mf", train_config=FAST_CONFIG, echo=None)
    first = tune(out, trials=2, **common)
    assert [r["trial"] for r in first.trials] == [0, 1] and first.n_new == 2
    # trial 0 is the starting configuration: what `recmodels train` with the same options gives
    from recmodels.training import train_run

    plain = train_run(tmp_path / "plain", data=synthetic.ratings, model="mf", train_config=FAST_CONFIG,
                      echo=None, quiet=True)
    assert first.trials[0]["valid_rmse"] == plain.metrics["valid"]["rmse"]
    second = tune(out, trials=4, resume=True, **common)
    assert [r["trial"] for r in second.trials] == [0, 1, 2, 3] and second.n_new == 2
    assert second.trials[:2] == first.trials  # the earlier trials are kept as they were
    params = [tuple(sorted((k, v) for k, v in r.items() if k in parameter_names()))
              for r in second.trials]
    assert len(set(params)) == 4, params  # the resumed sampler does not replay the first draws
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002", "0003"]
    assert second.best_value == min(r["valid_rmse"] for r in second.trials if r["valid_rmse"])
    # a budget the study has already spent, and options that differ from the study's
    with pytest.raises(ConfigError, match="already has 4 finished trial"):
        tune(out, trials=4, resume=True, **common)
    other = 0.2 if FAST_CONFIG.l2 != 0.2 else 0.3
    with pytest.raises(ConfigError, match=re.escape(f"train.l2 is {other!r} but the study was made "
                                                    f"with {FAST_CONFIG.l2!r}")):
        tune(out, trials=6, resume=True, **{**common, "train_config": FAST_CONFIG.replace(l2=other)})


def test_bad_trials_are_pruned_by_their_epoch_curves(synthetic, tmp_path):
    out = tmp_path / "tuned"
    result = tune(out, data=synthetic.ratings, model="mf", trials=10, echo=None, prune_warmup=1,
                  train_config=FAST_CONFIG.replace(epochs=4),
                  search_space={"embedding_lr": {"low": 1e-5, "high": 0.3, "log": True}})
    pruned = [r for r in result.trials if r["state"] == "pruned"]
    complete = [r for r in result.trials if r["state"] == "complete"]
    assert pruned and complete, result.trials
    for row in pruned:  # stopped early, left no run directory, and was worse at that epoch
        assert row["epochs"] < 4 and row["run_dir"] is None
        assert not (out / "trials" / f"{row['trial']:04d}").exists()
        epoch = len(row["valid_rmse_by_epoch"])
        assert min(row["valid_rmse_by_epoch"]) > min(r["valid_rmse_by_epoch"][epoch - 1] for r in complete)
    assert result.best_params["embedding_lr"] > max(r["embedding_lr"] for r in pruned)


@pytest.mark.parametrize("space, fragments", [
    ('colour = [1, 2]\n', ["unknown parameter(s) colour", "embedding_lr", "l2_frequency_exponent"]),
    ('l2 = {low = 0.1, high = 0.01}\n', ["l2", "low <= high"]),
    ('l2_frequency_exponent = {low = 0, high = 3}\n', ["l2_frequency_exponent", "bound 3"]),
    ('l2 = {low = 0, high = 1, log = true}\n', ["log range needs low > 0"]),
])
def test_a_bad_search_space_is_one_line(ratings_csv, tmp_path, space, fragments):
    path = tmp_path / "space.toml"
    path.write_text(space)
    out = tmp_path / "tuned"
    result = invoke("--data", ratings_csv, "--model", "mf", "--search-space", path, "--out", out, *FAST)
    assert_one_line_failure(result, str(path), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--trials", "0"], "--trials 0: the budget is empty"),
    (["--timeout", "0"], "--timeout 0.0: the budget is empty"),
    (["--model", "mf,svd"], "--model mf,svd: give one or more of mf, neumf, hybrid"),
])
def test_bad_options_are_one_line(ratings_csv, tmp_path, args, fragment):
    out = tmp_path / "tuned"
    result = invoke("--data", ratings_csv, "--out", out, *args, *FAST)
    assert_one_line_failure(result, fragment)
    assert not out.exists()


def test_without_optuna_the_command_names_the_extra(ratings_csv, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now fails
    out = tmp_path / "tuned"
    result = invoke("--data", ratings_csv, "--model", "mf", "--out", out, *FAST)
    assert_one_line_failure(result, "optuna", "pip install 'recmodels[tune]'")
    assert not out.exists()
    with pytest.raises(ImportError, match=r"recmodels\[tune\]"):
        tune(out, data=ratings_csv)


def test_the_search_space_names_come_from_the_config_dataclasses():
    import dataclasses

    from recmodels.models import ModelConfig

    names = set(parameter_names())
    assert {f.name for f in dataclasses.fields(TrainConfig)} - names == \
        {"device", "num_threads", "eval_batch_size", "seed"}
    assert set(ModelConfig.user_fields()) <= names and "dropout" in names
    params = parse_space({"embedding_dim": [8, 16], "l2": {"low": 0.01, "high": 0.1, "log": True},
                          "num_layers": {"low": 1, "high": 3}, "epochs": 7})
    assert {n: p.kind for n, p in params.items()} == {"epochs": "fixed", "l2": "float",
                                                      "embedding_dim": "choice", "num_layers": "int"}


def test_a_config_file_sets_train_and_tune_options_and_overwrite_replaces(ratings_csv, tmp_path):
    (tmp_path / "space.json").write_text(json.dumps({"l2": {"low": 0.01, "high": 0.1}}))
    toml = tmp_path / "tune.toml"
    toml.write_text(f'data = "{ratings_csv}"\nmodel = "mf"\ntrials = 2\nepochs = 2\nbatch_size = 512\n'
                    'threads = 1\nquiet = true\nsearch_space = "space.json"\nout = "tuned"\n')
    result = invoke("--config", toml)  # relative paths are the file's folder's
    assert result.exit_code == 0, result.output
    out = tmp_path / "tuned"
    rows = read_rows(out)
    assert len(rows) == 2 and "l2" in rows[0] and "embedding_lr" not in rows[0]
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["train"]["batch_size"] == 512
    assert 0.01 <= config["train"]["l2"] <= 0.1
    result = invoke("--config", toml, "--overwrite", "--trials", "1")
    assert result.exit_code == 0, result.output
    assert len(read_rows(out)) == 1 and sorted(p.name for p in (out / "trials").iterdir()) == ["0000"]


def test_resume_takes_the_same_files_by_another_path(ratings_csv, tmp_path, monkeypatch):
    out = tmp_path / "tuned"
    assert invoke("--data", ratings_csv, "--model", "mf", "--trials", "1", "--out", out, *FAST).exit_code == 0
    monkeypatch.chdir(ratings_csv.parent)
    result = invoke("--data", ratings_csv.name, "--model", "mf", "--trials", "2", "--out", out,
                    "--resume", *FAST)
    assert result.exit_code == 0, result.output
    assert len(read_rows(out)) == 2
    other = invoke("--data", ratings_csv.name, "--model", "mf", "--trials", "3", "--out", out,
                   "--resume", "--epochs", "3", "--batch-size", "512", "--threads", "1", "--quiet")
    assert_one_line_failure(other, "train.epochs is 3 but the study was made with 2",
                            "resume with the same options")
    assert len(read_rows(out)) == 2


def test_a_trial_left_running_by_a_killed_search_is_marked_failed_on_resume(synthetic, tmp_path):
    import optuna

    from recmodels.tuning.search import STUDY_FILE, STUDY_NAME

    out = tmp_path / "tuned"
    common = dict(data=synthetic.ratings, model="mf", train_config=FAST_CONFIG, echo=None)
    tune(out, trials=1, **common)
    storage = f"sqlite:///{out / STUDY_FILE}"
    optuna.load_study(study_name=STUDY_NAME, storage=storage).ask()  # what a kill mid-trial leaves
    (out / "trials" / ".0001.tmp").mkdir()  # and its partial run directory
    resumed = tune(out, trials=3, resume=True, **common)  # the failed trial counts towards --trials
    states = [t.state for t in optuna.load_study(study_name=STUDY_NAME, storage=storage).trials]
    assert states[1] == optuna.trial.TrialState.FAIL, states
    assert resumed.n_new == 1 and states[-1] == optuna.trial.TrialState.COMPLETE
    assert not (out / "trials" / ".0001.tmp").exists()
