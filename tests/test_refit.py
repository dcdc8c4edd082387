"""The low-rank refit after the SGD epochs (``TrainConfig.refit``, recmodels.training.refit)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from recmodels import data as D  # noqa: E402
from recmodels import runs  # noqa: E402
from recmodels.datasets import make_ratings  # noqa: E402
from recmodels.models import ModelConfig, build_model  # noqa: E402
from recmodels.training import RatingModel, TrainConfig, Trainer, train_run  # noqa: E402
from recmodels.training.refit import NOISE_SHARES, REFIT_TENSORS, refit_low_rank  # noqa: E402
from recmodels.training.trainer import RatingTensors, predict_tensors  # noqa: E402

CPU = torch.device("cpu")
PLANTED_RANK = 3


@pytest.fixture(scope="module")
def planted():
    """Rank-3 planted ratings: 600 users x 400 items x 40k, split 70/20/10, encoded."""
    syn = make_ratings(600, 400, 40000, rank=PLANTED_RANK, seed=1)
    split = D.split_interactions(syn.ratings, seed=0)
    users, items = D.fit_encoders(split.train)
    train, _ = D.encode(split.train, users, items)
    valid, _ = D.encode(split.valid, users, items)
    return syn, split, train, valid, len(users), len(items)


def _trained(planted, kind="mf", epochs=30, **config):
    """The refit's known answers are those of the plain model (tests/test_implicit.py: with the parts)."""
    _, _, train, valid, n_users, n_items = planted
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, n_users, n_items, embedding_dim=16, implicit="none",
                                    global_mean=float(train.rating.mean()),
                                    **({"pretrained_dim": 0} if kind != "hybrid" else {})),
                        **({"pretrained": torch.randn(n_items, 5)} if kind == "hybrid" else {}))
    trainer = Trainer(model, TrainConfig(device="cpu", epochs=epochs, num_threads=1, **config), CPU,
                      log=None, progress=False)
    trainer.fit(train, valid)
    return trainer


def _valid_rmse(model, valid) -> float:
    users = torch.as_tensor(np.asarray(valid.user_index, dtype=np.int64))
    items = torch.as_tensor(np.asarray(valid.item_index, dtype=np.int64))
    pred = predict_tensors(model.eval(), users, items).double().numpy()
    return float(np.sqrt(np.mean((pred - np.asarray(valid.rating, dtype=np.float64)) ** 2)))


def test_refit_finds_the_planted_rank_and_lowers_the_validation_error(planted):
    trainer = _trained(planted)
    report = trainer.refit_report
    assert report["changed"] and report["dim"] == 16
    assert report["rank"] == PLANTED_RANK
    assert report["valid_rmse_after"] < report["valid_rmse_before"] - 1e-3
    assert report["sweeps"] >= 1 and len(report["lambdas"]) >= 1
    # the SGD best stays as it was; the final weights differ only in the refitted tensors
    final, best = trainer.final_state_dict(), trainer.best_state_dict
    assert set(final) == set(best)
    changed = {name for name in final if not torch.equal(final[name], best[name])}
    assert changed and changed <= set(REFIT_TENSORS)


@pytest.mark.parametrize("kind, options", [("mf", {}), ("neumf", {}), ("hybrid", {}),
                                           ("mf", {"use_bias": False})])
def test_the_refitted_model_predicts_what_the_refit_measured(planted, kind, options):
    syn, _, train, valid, n_users, n_items = planted
    torch.manual_seed(0)
    config = ModelConfig(kind, n_users, n_items, embedding_dim=8, global_mean=float(train.rating.mean()),
                         pretrained_dim=4 if kind == "hybrid" else 0, **options)
    model = build_model(config, pretrained=torch.randn(n_items, 4) if kind == "hybrid" else None)
    Trainer(model, TrainConfig(device="cpu", epochs=3, num_threads=1, refit=False), CPU, log=None,
            progress=False).fit(train, valid)
    before = _valid_rmse(model, valid)
    report = refit_low_rank(model, RatingTensors.from_arrays(train, CPU),
                            RatingTensors.from_arrays(valid, CPU))
    assert report.valid_rmse_before == pytest.approx(before, abs=1e-5)
    assert report.changed
    assert _valid_rmse(model, valid) == pytest.approx(report.valid_rmse_after, abs=1e-5)
    assert report.valid_rmse_after < before
    # the kept rank: GMF columns beyond it are zero, and so are their predict weights
    weight = model.predict.weight[0, :8]
    assert torch.all(weight[report.rank:] == 0) and torch.all(weight[:report.rank] == 1)
    assert torch.all(model.user_gmf.weight[:, report.rank:] == 0)


def test_a_refit_that_cannot_gain_leaves_the_weights_alone(planted):
    _, _, train, valid, _, _ = planted
    trainer = _trained(planted, epochs=2, refit=False)
    model = trainer.model
    model.load_state_dict(trainer.best_state_dict)
    # validation rows rated exactly as the model predicts them: nothing can beat an error of 0
    tensors = RatingTensors.from_arrays(valid, CPU)
    perfect = RatingTensors(tensors.user_index, tensors.item_index,
                            predict_tensors(model.eval(), tensors.user_index, tensors.item_index))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = refit_low_rank(model, RatingTensors.from_arrays(train, CPU), perfect)
    assert not report.changed and report.sweeps == 0 and report.rank == report.dim
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert "no gain" in report.describe()


def test_no_refit_without_validation_rows_or_when_turned_off(planted):
    _, _, train, _, _, _ = planted
    assert _trained(planted, epochs=2, refit=False).refit is None
    _, _, train, _, n_users, n_items = planted
    model = build_model(ModelConfig("mf", n_users, n_items, embedding_dim=4))
    trainer = Trainer(model, TrainConfig(device="cpu", epochs=1, num_threads=1), CPU, log=None,
                      progress=False)
    trainer.fit(train)
    assert trainer.refit is None and trainer.final_state_dict() is trainer.best_state_dict


def test_configs_saved_before_the_refit_load_with_it_off():
    assert TrainConfig().refit is True
    saved = TrainConfig().to_dict()
    del saved["refit"]
    assert TrainConfig.from_dict(saved).refit is False
    with pytest.raises(Exception, match="refit must be true or false"):
        TrainConfig(refit="yes")


def _run(path, frame, **config):
    return train_run(path, data=frame, model="mf", model_options={"embedding_dim": 16, "implicit": "none"},
                     quiet=True,
                     echo=None, train_config=TrainConfig(device="cpu", num_threads=1, **config))


def test_the_run_directory_keeps_the_refit_and_a_resume_does_not_redo_it(planted, tmp_path):
    syn = planted[0]
    run = _run(tmp_path / "run", syn.ratings, epochs=6, patience=None)
    metrics = json.loads((run.path / runs.METRICS_FILE).read_text())
    report = metrics["refit"]
    assert report["changed"] and report["rank"] == PLANTED_RANK
    assert metrics["valid"]["rmse"] == pytest.approx(report["valid_rmse_after"], abs=1e-5)
    assert "refit: GMF rank 3 of 16" in (run.path / runs.LOG_FILE).read_text()
    model_pt = runs.load_torch(run.path / runs.MODEL_FILE)
    last = runs.load_torch(run.path / runs.LAST_FILE)
    assert last["refit"]["report"] == report
    # killed after last.pt but before model.pt and COMPLETE: the resume restores the refit as it was
    runs.save_torch({**model_pt, **last["refit"]["before"]}, run.path / runs.MODEL_FILE)
    (run.path / runs.COMPLETE_FILE).unlink()
    resumed = train_run(run.path, resume=True, quiet=True, echo=None)
    again = runs.load_torch(resumed.path / runs.MODEL_FILE)
    assert all(torch.equal(again[k], v) for k, v in model_pt.items())
    assert json.loads((run.path / runs.METRICS_FILE).read_text())["refit"] == report  # same seconds


def test_a_resumed_run_that_trains_on_refits_as_an_uninterrupted_one(planted, tmp_path):
    syn = planted[0]
    straight = _run(tmp_path / "straight", syn.ratings, epochs=4, patience=None)
    _run(tmp_path / "resumed", syn.ratings, epochs=3, patience=None)
    resumed = train_run(tmp_path / "resumed", resume=True, quiet=True, echo=None,
                        resume_overrides={"epochs": 4})
    history = resumed.metrics["history"]
    assert resumed.metrics["best_epoch"] == 4, [h["valid_rmse"] for h in history]  # the improving case
    a = runs.load_torch(straight.path / runs.MODEL_FILE)
    b = runs.load_torch(resumed.path / runs.MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads((straight.path / runs.METRICS_FILE).read_text())["refit"]
    rb = json.loads((resumed.path / runs.METRICS_FILE).read_text())["refit"]
    assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}


def test_no_refit_flag_and_the_estimator(planted, tmp_path):
    from click.testing import CliRunner

    from recmodels.cli import cli

    syn, split = planted[0], planted[1]
    data = tmp_path / "ratings.csv"
    syn.ratings.to_csv(data, index=False)
    out = tmp_path / "off"
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--model", "mf", "--out", str(out),
                                       "--epochs", "2", "--no-refit", "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / runs.CONFIG_FILE).read_text())["train"]["refit"] is False
    assert json.loads((out / runs.METRICS_FILE).read_text())["refit"] is None
    assert "refit:" not in (out / runs.LOG_FILE).read_text()
    est = RatingModel("mf", embedding_dim=16, implicit="none", epochs=30, num_threads=1,
                      device="cpu").fit(split.train, split.valid)
    assert est.metrics_["refit"]["rank"] == PLANTED_RANK
    assert est.metrics_["valid"]["rmse"] == pytest.approx(est.metrics_["refit"]["valid_rmse_after"],
                                                          abs=1e-5)


def test_a_refitted_bundle_scores_as_the_torch_model(planted, tmp_path):
    from recmodels.export import export_onnx
    from recmodels.scoring import Scorer

    syn, split = planted[0], planted[1]
    run = train_run(tmp_path / "run", data=syn.ratings, model="neumf", quiet=True, echo=None,
                    model_options={"embedding_dim": 8},
                    train_config=TrainConfig(device="cpu", num_threads=1, epochs=4))
    assert run.metrics["refit"]["changed"]
    bundle = export_onnx(run.path, tmp_path / "bundle")
    frame = split.valid.head(2000)
    scores = Scorer(bundle, device="cpu").score_frame(frame)["score"].to_numpy()
    est = RatingModel.load(run.path)
    np.testing.assert_allclose(scores, est.predict(frame), atol=1e-5)


def test_too_few_validation_rows_skip_the_refit(planted):
    from recmodels.training.refit import MIN_VALID_ROWS

    _, _, train, valid, n_users, n_items = planted
    few = RatingTensors.from_arrays(valid, CPU)
    few = RatingTensors(few.user_index[:MIN_VALID_ROWS - 1], few.item_index[:MIN_VALID_ROWS - 1],
                        few.rating[:MIN_VALID_ROWS - 1])
    lines = []
    model = build_model(ModelConfig("mf", n_users, n_items, embedding_dim=4))
    trainer = Trainer(model, TrainConfig(device="cpu", epochs=1, num_threads=1), CPU, log=lines.append,
                      progress=False)
    trainer.fit(train, few)
    assert trainer.refit is None
    assert any("refit: skipped" in line and f"{MIN_VALID_ROWS - 1}" in line for line in lines)


def test_a_resume_whose_extra_epochs_do_not_improve_keeps_the_refit(planted, tmp_path, monkeypatch):
    syn = planted[0]
    run = _run(tmp_path / "run", syn.ratings, epochs=20, patience=None)
    first = json.loads((run.path / runs.METRICS_FILE).read_text())
    model_pt = runs.load_torch(run.path / runs.MODEL_FILE)

    def no_second_refit(self, train, valid):
        raise AssertionError("the best weights did not change: their refit must be kept, not redone")

    monkeypatch.setattr(Trainer, "_refit", no_second_refit)
    train_run(run.path, resume=True, quiet=True, echo=None, resume_overrides={"epochs": 21})
    metrics = json.loads((run.path / runs.METRICS_FILE).read_text())
    history = metrics["history"]
    assert history[-1]["valid_rmse"] > min(h["valid_rmse"] for h in history)  # epoch 21 is no better
    assert metrics["refit"] == first["refit"]
    assert metrics["refit"]["valid_rmse_before"] == pytest.approx(min(h["valid_rmse"] for h in history))
    assert runs.load_torch(run.path / runs.LAST_FILE)["refit"]["report"] == first["refit"]
    again = runs.load_torch(run.path / runs.MODEL_FILE)
    assert all(torch.equal(again[k], v) for k, v in model_pt.items())


def test_fewer_users_than_gmf_dimensions():
    syn = make_ratings(10, 300, 3000, rank=2, seed=3)
    users, items = D.fit_encoders(syn.ratings)
    enc, _ = D.encode(syn.ratings, users, items)
    rows = RatingTensors.from_arrays(enc, CPU)
    torch.manual_seed(0)
    model = build_model(ModelConfig("mf", len(users), len(items), embedding_dim=16,
                                    global_mean=float(enc.rating.mean())))
    report = refit_low_rank(model, rows, rows)
    assert report.changed and report.rank <= len(users)
    assert _valid_rmse(model, enc) == pytest.approx(report.valid_rmse_after, abs=1e-5)


def test_rounding_noise_is_no_gain():
    # every GMF direction strong and the rows rated as the model predicts them (plus small noise):
    # the full-rank truncation only reproduces the SGD predictions, up to rounding
    for seed in range(6):
        torch.manual_seed(seed)
        model = build_model(ModelConfig("mf", 50, 40, embedding_dim=4, global_mean=3.0))
        with torch.no_grad():
            model.user_gmf.weight.normal_(0, 1)
            model.item_gmf.weight.normal_(0, 1)
        users = torch.arange(50).repeat_interleave(40)
        items = torch.arange(40).repeat(50)
        with torch.no_grad():
            rating = predict_tensors(model.eval(), users, items) + 0.01 * torch.randn(users.shape[0])
        rows = RatingTensors(users, items, rating)
        report = refit_low_rank(model, rows, rows, max_sweeps=0)
        assert not report.changed, seed
        assert report.valid_rmse_after == report.valid_rmse_before, seed


def test_a_resume_killed_after_its_extra_epochs_is_not_complete_and_says_so(planted, tmp_path,
                                                                            monkeypatch):
    import recmodels.training.pipeline as pipeline

    syn = planted[0]
    run = _run(tmp_path / "run", syn.ratings, epochs=20, patience=None)
    report = run.metrics["refit"]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "rating_metrics", killed)  # after the epochs, before the end
    with pytest.raises(KeyboardInterrupt):
        train_run(run.path, resume=True, quiet=True, echo=None, resume_overrides={"epochs": 21})
    assert not (run.path / runs.COMPLETE_FILE).exists()
    with pytest.raises(Exception, match="incomplete run"):
        runs.load_run(run.path)
    # what it wrote after its epoch agrees with model.pt: the refit is still the one it holds
    assert json.loads((run.path / runs.METRICS_FILE).read_text())["refit"] == report
    monkeypatch.undo()
    done = train_run(run.path, resume=True, quiet=True, echo=None)
    assert done.metrics["refit"] == report and (run.path / runs.COMPLETE_FILE).exists()


def test_a_refit_of_older_weights_than_model_pt_is_dropped_on_resume(planted):
    """Killed between writing model.pt and last.pt on an improving epoch of a resumed run."""
    trainer = _trained(planted, epochs=6, patience=None)
    state, refit = trainer.state_dict(), trainer.refit
    assert refit["report"]["changed"]
    newer = {k: v + 0.01 if k in refit["after"] else v.clone() for k, v in trainer.best_state_dict.items()}
    for best, kept in ((trainer.final_state_dict(), True), (trainer.best_state_dict, True),
                       (newer, False)):
        again = Trainer(build_model(trainer.model.config), TrainConfig(device="cpu", epochs=6),
                        CPU, log=None, progress=False)
        again.load_state_dict(state, best_state_dict=best)
        assert (again.refit is not None) is kept
        expected = trainer.best_state_dict if kept else newer
        assert all(torch.equal(again.best_state_dict[k], v) for k, v in expected.items())


def test_bias_scale_must_be_positive(planted):
    _, _, train, valid, n_users, n_items = planted
    model = build_model(ModelConfig("mf", n_users, n_items, embedding_dim=4))
    rows = RatingTensors.from_arrays(valid, CPU)
    with pytest.raises(ValueError, match="bias_scale must be > 0"):
        refit_low_rank(model, RatingTensors.from_arrays(train, CPU), rows, bias_scale=0)


def _fresh_mf(planted, epochs=4):
    trainer = _trained(planted, epochs=epochs, refit=False)
    trainer.model.load_state_dict(trainer.best_state_dict)
    return trainer.model


def _refits(planted, *options):
    """Refit the same SGD weights once per dict of options; the model holds the last one."""
    _, _, train, valid, _, _ = planted
    tr, va = RatingTensors.from_arrays(train, CPU), RatingTensors.from_arrays(valid, CPU)
    model = _fresh_mf(planted)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    reports = []
    for opts in options:
        model.load_state_dict(state)
        reports.append(refit_low_rank(model, tr, va, **opts))
    return model, reports


def test_the_variational_sweeps_beat_the_ridge_result_on_validation(planted):
    valid = planted[3]
    one = {"count_exponents": (0.0,)}  # one prior shape: the sweeps' effect alone
    model, (ridge, report) = _refits(planted, {"variational": False, **one}, one)
    assert ridge.variational_sweeps == 0 and ridge.noise_share is None
    assert report.variational_sweeps >= 1 and report.noise_share in NOISE_SHARES
    assert report.rank == ridge.rank == PLANTED_RANK
    assert report.valid_rmse_after < ridge.valid_rmse_after - 1e-4
    assert _valid_rmse(model, valid) == pytest.approx(report.valid_rmse_after, abs=1e-5)
    assert "variational" in report.describe()


def _per_row_reference(own, other, n_own, features, target, bias, lam, prior, cov_other, noise):
    """Each own row's ridge solution and posterior covariance, one row at a time."""
    r = features.shape[1]
    k = r + int(bias)
    counts = torch.bincount(own, minlength=n_own).double()
    mean = counts[counts > 0].mean()
    diagonal = torch.ones(k, dtype=torch.float64)
    if bias:
        diagonal[-1] = prior.bias_scale
    solutions, covariances = torch.zeros(n_own, k, dtype=torch.float64), []
    for row in range(n_own):
        mine = torch.nonzero(own == row).flatten().tolist()
        gram, rhs = torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        for rating in mine:
            x = features[other[rating]]
            if bias:
                x = torch.cat([x, torch.ones(1, dtype=torch.float64)])
            gram += torch.outer(x, x)
            if cov_other is not None:
                gram[:r, :r] += cov_other[other[rating]]
            rhs += x * target[rating]
        scale = (max(len(mine), 1) / mean) ** prior.count_exponent
        system = gram + lam * scale * torch.diag(diagonal)
        solutions[row] = torch.linalg.solve(system, rhs)
        covariances.append(noise * torch.linalg.inv(system)[:r, :r])
    return solutions, torch.stack(covariances)


@pytest.mark.parametrize("bias, bias_scale, count_exponent, variational",
                         [(True, 1.0, 0.0, True), (True, 2.0, 0.5, True), (False, 1.0, 0.0, False),
                          (True, 0.5, 0.0, False)])
def test_the_batched_solves_equal_a_per_row_reference(monkeypatch, bias, bias_scale, count_exponent,
                                                      variational):
    import recmodels.training.refit_solve as solve
    from recmodels.training.refit import _covariances, _Prior, _ridge_side

    gen = torch.Generator().manual_seed(0)
    n_own, n_other, rank, n = 60, 25, 4, 700
    own = torch.randint(0, n_own - 10, (n,), generator=gen)  # the last block has no ratings
    own[:300] = torch.randint(0, 5, (300,), generator=gen)  # a few heavy rows
    other = torch.randint(0, n_other, (n,), generator=gen)
    features = torch.randn(n_other, rank, dtype=torch.float64, generator=gen)
    target = torch.randn(n, dtype=torch.float64, generator=gen)
    cov_other = None
    if variational:
        cov_other = torch.randn(n_other, rank, rank, dtype=torch.float64, generator=gen)
        cov_other = cov_other @ cov_other.transpose(1, 2) * 0.1  # positive definite
    prior = _Prior(bias_scale, count_exponent)
    lambdas = (0.5, 2.0)
    # small blocks of own rows, the partners' table in several column chunks, several threads
    monkeypatch.setattr(solve, "BLOCK_BYTES", 8 * 25 * 7)
    monkeypatch.setattr(solve, "TABLE_BYTES", 8 * n_other * 4)
    monkeypatch.setattr(solve, "_MIN_ROWS_PER_WORKER", 4)
    solutions, blocks = _ridge_side(own, other, n_own, features, target, bias, lambdas, prior,
                                    cov_other, keep=True)
    assert len(blocks) > 2
    for lam, batched in zip(lambdas, solutions, strict=True):
        expected, covariances = _per_row_reference(own, other, n_own, features, target, bias, lam,
                                                   prior, cov_other, noise=0.3)
        torch.testing.assert_close(batched, expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(_covariances(blocks, n_own, rank, lam, noise=0.3), covariances,
                                   rtol=1e-10, atol=1e-10)


def test_rows_that_are_not_numerically_positive_definite_are_solved_as_linalg_solve():
    from recmodels.training.refit_solve import ridge_inverse, ridge_solves

    gram = torch.tensor([[[2.0, 1.0], [1.0, 2.0]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    rhs = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    penalty = torch.full((2, 2), 0.5, dtype=torch.float64)
    (x,) = ridge_solves(gram, rhs, [penalty])
    system = gram + torch.diag_embed(penalty)  # the second is indefinite: no Cholesky, but LU
    torch.testing.assert_close(x, torch.linalg.solve(system, rhs), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ridge_inverse(gram, penalty, 2), torch.linalg.inv(system))
    assert torch.equal(gram[1], torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))  # as it came


def test_the_refit_prints_a_line_before_it_starts_and_one_per_sweep(planted):
    from dataclasses import replace

    from recmodels.training.refit import RefitReport

    _, _, train, valid, _, _ = planted
    trainer = _trained(planted, epochs=4, refit=False)
    lines = []
    trainer.log = lines.append
    trainer.config = replace(trainer.config, refit=True)
    trainer.fit(train, valid)  # finished: only the refit runs
    report = trainer.refit_report
    refit_lines = [line for line in lines if line.startswith("refit:")]
    assert "training" in refit_lines[0] and " s)" not in refit_lines[0]  # before any work
    assert refit_lines[-1] == RefitReport.from_dict(report).describe()
    assert any(f"rank {report['rank']} of 16" in line for line in refit_lines[1:-1])
    assert sum("ridge sweep" in line for line in refit_lines) >= max(1, report["sweeps"])
    assert sum("variational sweep" in line for line in refit_lines) >= max(1, report["variational_sweeps"])
    assert not any("rows^0.5" in line for line in refit_lines)  # no implicit parts: one prior shape


def test_a_given_rank_is_kept(planted):
    _, _, train, valid, _, _ = planted
    model = _fresh_mf(planted)
    lines = []
    report = refit_low_rank(model, RatingTensors.from_arrays(train, CPU),
                            RatingTensors.from_arrays(valid, CPU), rank=6, log=lines.append)
    assert report.changed and report.rank == 6
    assert torch.all(model.user_gmf.weight[:, 6:] == 0) and torch.all(model.predict.weight[0, :6] == 1)
    assert any("rank 6 of 16" in line for line in lines)


def test_the_variational_sweeps_are_skipped_when_their_covariances_would_not_fit(planted, monkeypatch):
    import recmodels.training.refit as refit

    _, _, train, valid, _, _ = planted
    monkeypatch.setattr(refit, "_VARIATIONAL_BYTES", 0)
    report = refit_low_rank(_fresh_mf(planted), RatingTensors.from_arrays(train, CPU),
                            RatingTensors.from_arrays(valid, CPU))
    assert report.changed and report.variational_sweeps == 0 and report.noise_share is None


def test_reports_saved_before_the_variational_sweeps_load():
    from recmodels.training.refit import RefitReport

    old = {"dim": 16, "rank": 3, "sweeps": 2, "lambdas": [2.0, 2.0], "valid_rmse_before": 0.9,
           "valid_rmse_after": 0.8, "changed": True, "seconds": 1.0}
    report = RefitReport.from_dict(old)
    assert report.variational_sweeps == 0 and "variational" not in report.describe()


def test_without_noise_the_variational_sweeps_are_the_converged_ridge_sweeps(planted):
    one = {"count_exponents": (0.0,)}  # one prior shape: the sweeps' effect alone
    _, (ridge, silent, default) = _refits(planted, {"variational": False, **one},
                                          {"noise_shares": (1e-12,), **one}, one)
    # no covariance to add: more of the ridge sweeps that had already stopped gaining
    assert silent.valid_rmse_after == pytest.approx(ridge.valid_rmse_after, abs=2e-4)
    assert default.valid_rmse_after < silent.valid_rmse_after - 1e-4


def test_the_refit_keeps_the_prior_shape_validation_prefers(planted):
    """One chain of ridge sweeps per prior shape (``count_exponents``): the result is the better
    chain's, and the report names its shape."""
    valid = planted[3]
    ridge = {"variational": False}
    model, (flat, grown, both) = _refits(planted, {"count_exponents": (0.0,), **ridge},
                                         {"count_exponents": (0.5,), **ridge},
                                         {"count_exponents": (0.0, 0.5), **ridge})
    assert flat.count_exponent == 0.0 and grown.count_exponent == 0.5
    rmses = (flat.valid_rmse_after, grown.valid_rmse_after)
    assert both.valid_rmse_after == pytest.approx(min(rmses), abs=1e-5)
    if abs(rmses[0] - rmses[1]) > 1e-5:
        assert both.count_exponent == (0.0 if rmses[0] < rmses[1] else 0.5)
    assert _valid_rmse(model, valid) == pytest.approx(both.valid_rmse_after, abs=1e-5)
