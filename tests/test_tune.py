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
    with pytest.raises(ConfigError, match=re.escape(f"this call has --l2 {other} but the study was "
                                                    "made with --l2 not given (train.l2)")):
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
    assert_one_line_failure(other, "this call has --epochs 3 but the study was made with --epochs 2",
                            "resume with the same options")
    assert len(read_rows(out)) == 2


def test_a_trial_left_running_by_a_killed_search_is_marked_failed_on_resume(synthetic, tmp_path):
    import optuna

    from recmodels.tuning.layout import STUDY_FILE
    from recmodels.tuning.study import STUDY_NAME

    out = tmp_path / "tuned"
    common = dict(data=synthetic.ratings, model="mf", train_config=FAST_CONFIG, echo=None)
    tune(out, trials=1, **common)
    storage = f"sqlite:///{out / STUDY_FILE}"
    optuna.load_study(study_name=STUDY_NAME, storage=storage).ask()  # what a kill mid-trial leaves
    (out / "trials" / ".0001.tmp").mkdir()  # and its partial run directory
    resumed = tune(out, trials=3, resume=True, **common)  # it does not count towards --trials
    states = [t.state for t in optuna.load_study(study_name=STUDY_NAME, storage=storage).trials]
    assert states[1] == optuna.trial.TrialState.FAIL, states
    assert resumed.n_new == 2 and states[-2:] == [optuna.trial.TrialState.COMPLETE] * 2
    assert [r["state"] for r in resumed.trials] == ["complete", "interrupted", "complete", "complete"]
    assert not (out / "trials" / ".0001.tmp").exists()


def _interrupt_trial(monkeypatch, call: int, epoch: int = 1):
    """Make the ``call``-th trial (0-based) raise KeyboardInterrupt after ``epoch``, as Ctrl-C would."""
    import recmodels.training.pipeline as pipeline

    real, calls = pipeline.train_run, []

    def train_run(out, *, on_epoch=None, **options):
        calls.append(out)
        if len(calls) - 1 != call:
            return real(out, on_epoch=on_epoch, **options)

        def hook(trainer, record, improved):
            on_epoch(trainer, record, improved)
            if record.epoch == epoch:
                raise KeyboardInterrupt

        return real(out, on_epoch=hook, **options)

    monkeypatch.setattr(pipeline, "train_run", train_run)


def test_ctrl_c_is_one_line_and_the_interrupted_trial_is_rerun_on_resume(ratings_csv, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "tuned"
    args = ["--data", ratings_csv, "--model", "mf", "--trials", "3", "--out", out, *FAST]
    _interrupt_trial(monkeypatch, call=1)
    result = invoke(*args)
    assert result.exit_code == 130, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Interrupted: ") and "--resume" in lines[0], lines
    assert "Traceback" not in result.output and str(out) in lines[0]
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000"]  # nothing half-written
    monkeypatch.undo()
    resumed = invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    states = {int(r["trial"]): r["state"] for r in read_rows(out)}
    assert states == {0: "complete", 1: "interrupted", 2: "complete", 3: "complete"}, states
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0002", "0003"]


def test_ctrl_c_while_the_data_is_read_is_one_line_too(ratings_csv, tmp_path, monkeypatch):
    import recmodels.tuning.search as search

    def interrupted(**options):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "build_setup", interrupted)
    out = tmp_path / "tuned"
    result = invoke("--data", ratings_csv, "--model", "mf", "--out", out, *FAST)
    assert result.exit_code == 130 and result.output.strip() == (
        "Interrupted before the search started; nothing was written"), result.output
    assert not out.exists()


def test_an_interrupted_starting_configuration_is_run_again(synthetic, tmp_path, monkeypatch):
    out = tmp_path / "tuned"
    common = dict(data=synthetic.ratings, model="mf", train_config=FAST_CONFIG, echo=None)
    _interrupt_trial(monkeypatch, call=0)
    with pytest.raises(KeyboardInterrupt):
        tune(out, trials=2, **common)
    monkeypatch.undo()
    result = tune(out, trials=2, resume=True, **common)
    assert [r["state"] for r in result.trials] == ["interrupted", "complete", "complete"]
    drawn = {n: v for n, v in result.trials[0].items()  # what the interrupted trial had set
             if n in parameter_names() and n != "epochs" and v is not None}
    assert drawn and {n: result.trials[1][n] for n in drawn} == drawn, result.trials[:2]


def test_progress_lines_number_trials_as_the_table_does_and_show_each_epoch(ratings_csv, tmp_path):
    out = tmp_path / "tuned"
    result = invoke("--data", ratings_csv, "--model", "mf", "--trials", "2", "--out", out,
                    *[a for a in FAST if a != "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for number in (0, 1):
        assert any(line.startswith(f"trial {number} ({number + 1}/2) mf: valid_rmse") for line in lines)
        for epoch in (1, 2):  # a line per epoch while a trial runs
            assert any(line.startswith(f"  trial {number} epoch {epoch}/2") for line in lines), lines
    table = lines[lines.index(next(line for line in lines if line.split()[:2] == ["trial", "state"])):]
    assert sorted(int(line.split()[0].rstrip("*")) for line in table[1:3]) == [0, 1]
    best = json.loads((out / "trials.json").read_text())["best"]["trial"]
    assert f"best trial {best}:" in result.output and (out / "trials" / f"{best:04d}").is_dir()


def test_the_trials_plot_has_whole_trial_numbers(tmp_path, monkeypatch):
    import recmodels.fileio as fileio
    import recmodels.tuning.results as results

    figures = []
    monkeypatch.setattr(fileio, "save_png", lambda fig, path: figures.append(fig))
    rows = [{"trial": i, "state": "complete", "valid_rmse": 1.0 - 0.1 * i, "valid_rmse_by_epoch": [1.0]}
            for i in range(3)]
    results.plot_trials(rows, tmp_path / "trials.png")
    ax = figures[0].axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_help_names_every_parameter_of_the_default_space():
    from recmodels.tuning import default_space

    text = " ".join(CliRunner().invoke(cli, ["tune", "--help"]).output.split())
    names = {*default_space(("mf",)), *default_space(("neumf",)), *default_space(("mf",), "adam")}
    assert "average_decay" in names
    assert [n for n in sorted(names) if n not in text] == []


def test_a_resume_names_what_differs_as_the_user_gave_it(ratings_csv, tmp_path):
    out = tmp_path / "tuned"
    assert invoke("--data", ratings_csv, "--model", "mf", "--trials", "1", "--out", out, *FAST).exit_code == 0
    # --optimizer changes the default space too; the option is what the user changed
    other = invoke("--data", ratings_csv, "--model", "mf", "--trials", "2", "--out", out, "--resume",
                   "--optimizer", "adam", *FAST)
    assert_one_line_failure(other, "this call has --optimizer adam but the study was made with "
                                   "--optimizer rowwise-adagrad")
    space = tmp_path / "space.toml"
    space.write_text("l2 = {low = 0.01, high = 0.1}\n")
    other = invoke("--data", ratings_csv, "--model", "mf", "--trials", "2", "--out", out, "--resume",
                   "--search-space", space, *FAST)
    assert_one_line_failure(other, "the search space differs from the study's at l2: "
                                   f"{{low = 0.01, high = 0.1}} in --search-space {space}, "
                                   "{low = 0.005, high = 0.2, log = true} in the study's", "tune.json")


def test_every_setting_a_resume_compares_is_named_by_a_tune_option():
    import dataclasses

    from recmodels.cli.tune import OPTIONS
    from recmodels.models import ModelConfig
    from recmodels.tables import CsvDialect
    from recmodels.training.setup import DataConfig
    from recmodels.tuning.settings import option_name

    flags = {flag.split("/")[i] for o in OPTIONS for flag in o.flags for i in (0, -1)}
    keys = ["model", "prune", "prune_warmup", "space.l2.low",
            *(f"inputs.{name}" for name in ("data", "train", "valid", "test", "item_embeddings")),
            *(f"train.{f.name}" for f in dataclasses.fields(TrainConfig)),
            *(f"data.{f.name}" for f in dataclasses.fields(DataConfig)),
            *(f"data.csv.{f.name}" for f in dataclasses.fields(CsvDialect)),
            *(f"model_options.{name}" for name in ModelConfig.user_fields())]
    assert {key: option_name(key) for key in keys if option_name(key) not in flags} == {}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing"])
def test_resume_on_a_corrupt_study_db_is_one_line(ratings_csv, tmp_path, damage):
    out = tmp_path / "tuned"
    args = ["--data", ratings_csv, "--model", "mf", "--out", out, *FAST]
    assert invoke(*args, "--trials", "1").exit_code == 0
    study = out / "study.db"
    if damage == "missing":
        study.unlink()
    else:
        study.write_bytes({"garbage": b"this is not a database\n" * 400, "empty": b"",
                           "truncated": study.read_bytes()[:6000]}[damage])
    result = invoke(*args, "--trials", "2", "--resume")
    assert_one_line_failure(result, str(study), "cannot be read", "--overwrite", "another --out")
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000"]


def test_resume_on_changed_data_is_refused(synthetic, tmp_path):
    data = tmp_path / "ratings.csv"
    synthetic.ratings.to_csv(data, index=False)
    out = tmp_path / "tuned"
    args = ["--data", data, "--model", "mf", "--out", out, *FAST]
    assert invoke(*args, "--trials", "1").exit_code == 0
    recorded = json.loads((out / "tune.json").read_text())["fingerprints"]["data"]
    assert recorded["bytes"] == data.stat().st_size and recorded["hashed"] == "whole"
    text = data.read_text()
    header, first, rest = text.split("\n", 2)
    fields = first.split(",")
    fields[2] = "1" if fields[2] != "1" else "2"  # one rating changed, the size kept
    data.write_text("\n".join([header, ",".join(fields), rest]))
    result = invoke(*args, "--trials", "2", "--resume")
    assert_one_line_failure(result, "--data changed since the study was made (same size, other "
                                    "contents)", "--overwrite or another --out")
    data.write_text(text + "99999,99999,3,0\n")  # a row added
    result = invoke(*args, "--trials", "2", "--resume")
    assert_one_line_failure(result, "--data changed since the study was made", "bytes now")
    data.write_text(text)  # the same contents again: resumed
    assert invoke(*args, "--trials", "2", "--resume").exit_code == 0
    assert len(read_rows(out)) == 2


def test_resume_on_a_changed_dataframe_is_refused(synthetic, tmp_path):
    out = tmp_path / "tuned"
    common = dict(model="mf", train_config=FAST_CONFIG, echo=None)
    tune(out, data=synthetic.ratings, trials=1, **common)
    changed = synthetic.ratings.copy()
    changed.loc[0, "rating"] = 1 if changed.loc[0, "rating"] != 1 else 2
    with pytest.raises(ConfigError, match="--data changed since the study was made"):
        tune(out, data=changed, trials=2, resume=True, **common)


def test_large_inputs_are_fingerprinted_by_samples(tmp_path, monkeypatch):
    import recmodels.tuning.settings as settings

    monkeypatch.setattr(settings, "WHOLE_HASH_BYTES", 1000)
    monkeypatch.setattr(settings, "SAMPLE_BYTES", 100)
    path = tmp_path / "big.csv"
    path.write_bytes(bytes(range(256)) * 40)
    first = settings.fingerprint(path)
    assert first["hashed"] == "sampled" and first["bytes"] == 10240
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last byte is in the last sample
    path.write_bytes(bytes(data))
    assert settings.fingerprint(path)["sha256"] != first["sha256"]
