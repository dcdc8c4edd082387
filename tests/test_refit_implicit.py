"""The refit's re-solve of the implicit tables (``training/refit_implicit.py``): the conjugate
gradients against dense solves, and the refit with and without the re-solve."""

from __future__ import annotations

import numpy as np
import pytest
from test_implicit import planted_choice, rmse

torch = pytest.importorskip("torch")

from recmodels.models import ModelConfig, build_model  # noqa: E402
from recmodels.models.implicit import normalised_matrix, rated_csr, transposed  # noqa: E402
from recmodels.training import TrainConfig, Trainer, refit_implicit  # noqa: E402
from recmodels.training.refit import refit_low_rank  # noqa: E402
from recmodels.training.refit_implicit import ImplicitRegression  # noqa: E402
from recmodels.training.refit_solve import conjugate_gradient  # noqa: E402
from recmodels.training.tensors import RatingTensors  # noqa: E402

CPU = torch.device("cpu")


def test_conjugate_gradient_solves_a_positive_definite_system():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(40, 40))
    system = torch.tensor(m @ m.T + 0.5 * np.eye(40))
    rhs = torch.tensor(rng.normal(size=(20, 2)))  # a matrix of unknowns is one vector

    def apply(x):
        return (system @ x.reshape(-1)).reshape(x.shape)

    inverse_diagonal = 1.0 / torch.diagonal(system).reshape(20, 2)
    x, iterations = conjugate_gradient(apply, rhs, torch.zeros_like(rhs), lambda r: inverse_diagonal * r,
                                       tolerance=1e-12, max_iterations=500)
    expected = torch.linalg.solve(system, rhs.reshape(-1)).reshape(20, 2)
    assert torch.allclose(x, expected, atol=1e-8)
    assert 0 < iterations < 500
    again, none = conjugate_gradient(apply, rhs, x, lambda r: r, tolerance=1e-6, max_iterations=500)
    assert none == 0 and torch.equal(again, x)  # started at the answer: no step


@pytest.mark.parametrize("keep_grams", [True, False])
@pytest.mark.parametrize("blocked", [True, False])
def test_implicit_regression_equals_the_dense_ridge_solution(keep_grams, blocked, monkeypatch):
    """``min ||t - F[other] . (A X)[own]||^2 + lam ||X||^2``, written out as one dense regression
    over ``vec(X)`` (a rating's regressors: ``kron(A[own], F[other])``)."""
    rng = np.random.default_rng(1)
    n_own, n_table, k, n, lam = 7, 5, 3, 60, 0.7
    own = torch.tensor(rng.integers(0, n_own, n))
    other = torch.tensor(rng.integers(0, n_table, n))
    features = torch.tensor(rng.normal(size=(n_table, k)))
    target = torch.tensor(rng.normal(size=n))
    indptr, indices = rated_csr(own, other, n_own, n_table)
    a = normalised_matrix(indptr, indices, n_table).to(torch.float64)
    dense_a = a.to_dense().numpy()
    if not blocked:  # the preconditioner's blocks "do not fit": its diagonal
        monkeypatch.setattr(refit_implicit, "PRECONDITIONER_BYTES", 0)
    regression = ImplicitRegression(own, other, features, target, (a, transposed(a)), keep_grams=keep_grams)
    assert regression.blocked is blocked and (regression.grams is not None) is keep_grams
    x, _ = regression.solve(lam, torch.zeros(n_table, k, dtype=torch.float64), tolerance=1e-12)
    design = np.stack([np.kron(dense_a[r], features[o].numpy()) for r, o in zip(own.tolist(), other.tolist(),
                                                                                 strict=True)])
    expected = np.linalg.solve(design.T @ design + lam * np.eye(n_table * k), design.T @ target.numpy())
    np.testing.assert_allclose(x.numpy().reshape(-1), expected, atol=1e-6)


def _trained(junk: bool):
    train, valid, _ = planted_choice(per_item=4)
    torch.manual_seed(0)
    model = build_model(ModelConfig("mf", 120, 940, embedding_dim=8, implicit="item", global_mean=3.0))
    Trainer(model, TrainConfig(epochs=3, num_threads=1, refit=False, patience=None), CPU, log=None,
            progress=False).fit(train, valid)
    if junk:
        with torch.no_grad():
            model.user_implicit.weight.normal_(0.0, 2.0)
    return model, RatingTensors.from_arrays(train, CPU), RatingTensors.from_arrays(valid, CPU), valid


@pytest.mark.parametrize("junk", [False, True])
def test_the_refit_resolves_the_implicit_tables(junk):
    """On data with an implicit signal, re-solving the tables beats holding them (junk tables are
    repaired, not only dropped), and the model then predicts what the refit measured."""
    held, tr, va, valid = _trained(junk)
    solved, *_ = _trained(junk)
    without = refit_low_rank(held, tr, va, implicit_lambdas=())
    report = refit_low_rank(solved, tr, va)
    assert report.implicit_lambdas and without.implicit_lambdas == []
    lams = report.implicit_lambdas  # after a side's first choice: the last one, half or twice it
    assert all(b / a in (0.5, 1.0, 2.0) for a, b in zip(lams, lams[1:], strict=False))
    assert report.valid_rmse_after < without.valid_rmse_after - 0.002
    assert report.implicit_kept is True
    assert rmse(solved, valid) == pytest.approx(report.valid_rmse_after, abs=1e-5)


def test_the_trainer_re_solves_the_tables_unless_told_not_to():
    train, valid, _ = planted_choice(per_item=4)
    reports = {}
    for on in (True, False):
        torch.manual_seed(0)
        model = build_model(ModelConfig("mf", 120, 940, embedding_dim=8, implicit="item", global_mean=3.0))
        trainer = Trainer(model, TrainConfig(epochs=3, num_threads=1, patience=None, refit_tables=on), CPU,
                          log=None, progress=False)
        trainer.fit(train, valid)
        assert trainer.state.implicit_probe["kept"]
        reports[on] = trainer.refit_report
    assert reports[True]["implicit_lambdas"] and reports[False]["implicit_lambdas"] == []
    assert reports[True]["valid_rmse_after"] < reports[False]["valid_rmse_after"]
