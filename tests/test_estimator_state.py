"""What scikit-learn's private-internals tests check, asked of netcore's own state: the L-BFGS
objective's gradient, the learning-rate schedules across warm starts, the stopping rule's count,
and what a diverging fit leaves behind."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import MinMaxScaler

from netcore import MLPClassifier, MLPRegressor
from netcore.estimators.lbfgs import Objective

X_BINARY, Y_BINARY = load_digits(n_class=2, return_X_y=True)
X_BINARY, Y_BINARY = MinMaxScaler().fit_transform(X_BINARY[:100]), Y_BINARY[:100]


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("n_labels", [2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_objective_gradient_matches_finite_differences(activation, n_labels, weighted):
    """scikit-learn's test_gradient, on netcore's objective (L2 term and sample weights included)."""
    rng = np.random.RandomState(42)
    X = rng.rand(5, 10)
    y = 1 + np.mod(np.arange(5) + 1, n_labels)
    sw = rng.rand(5) + 0.5 if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(activation=activation, hidden_layer_sizes=10, solver="lbfgs", alpha=1e-5, max_iter=1, random_state=1)
        mlp.fit(X, y, sample_weight=sw)
    net = mlp._network()
    objective = Objective(net, net.prepare(X, mlp._network_targets(mlp._label_binarizer.transform(y)), sw), mlp.alpha)
    theta = objective.pack(net.layers)
    _, grad = objective(theta)
    eps = 1e-5
    numeric = np.array([(objective(theta + eps * e)[0] - objective(theta - eps * e)[0]) / (2 * eps) for e in np.eye(len(theta))])
    np.testing.assert_almost_equal(numeric, grad)


def test_invscaling_rate_counts_samples_across_warm_starts():
    """scikit-learn's test_learning_rate_warmstart: a warm start begins a new optimizer at
    learning_rate_init, and after it the rate is learning_rate_init / (t + 1) ** power_t."""
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    for learning_rate in ["invscaling", "constant"]:
        mlp = MLPClassifier(solver="sgd", hidden_layer_sizes=4, learning_rate=learning_rate, max_iter=1, power_t=0.25, warm_start=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(X, y)
            prev_eta = mlp._trainer.current_lr()
            mlp.fit(X, y)
            post_eta = mlp._trainer.current_lr()
        if learning_rate == "constant":
            assert prev_eta == post_eta == mlp.learning_rate_init
        else:
            assert prev_eta == mlp.learning_rate_init / 5**0.25
            assert post_eta == mlp.learning_rate_init / 9**0.25
        assert mlp.t_ == 8


def test_adaptive_rate_falls_until_it_stops():
    """scikit-learn's test_adaptive_learning_rate."""
    clf = MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive").fit([[3, 2], [1, 6]], [1, 0])
    assert clf.max_iter > clf.n_iter_
    assert 1e-6 > clf._trainer.optimizer.lr


@pytest.mark.parametrize("n_iter_no_change", [2, 5, 10, 50, 100])
def test_stopping_rule_counts_epochs_without_improvement(n_iter_no_change):
    """scikit-learn's test_n_iter_no_change, on the rule's count."""
    clf = MLPClassifier(tol=0.01, max_iter=3000, solver="sgd", n_iter_no_change=n_iter_no_change).fit(X_BINARY, Y_BINARY)
    assert clf._rule.no_improvement_count == n_iter_no_change + 1
    assert clf.max_iter > clf.n_iter_


def test_infinite_patience_runs_to_max_iter():
    """scikit-learn's test_n_iter_no_change_inf."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(tol=1e9, max_iter=1000, solver="sgd", n_iter_no_change=np.inf).fit(X_BINARY, Y_BINARY)
    assert clf.n_iter_ == 1000
    assert clf._rule.no_improvement_count == clf.n_iter_ - 1


def test_a_diverging_fit_is_an_error_unless_early_stopping_kept_a_good_model():
    X = np.random.RandomState(0).rand(40, 3) * 1e3
    y = X.sum(axis=1)
    params = dict(hidden_layer_sizes=20, activation="identity", solver="sgd", learning_rate_init=1.0, max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            MLPRegressor(**params).fit(X, y)
        mlp = MLPRegressor(**params, early_stopping=True).fit(X, y)
    assert np.isnan(mlp.validation_scores_[-1]) and np.isnan(mlp.loss_curve_[-1])
    assert len(mlp.validation_scores_) == mlp.n_iter_ < 20
    assert all(np.isfinite(c).all() for c in mlp.coefs_)


def test_verbose_prints_each_iteration(capsys):
    MLPClassifier(hidden_layer_sizes=2, max_iter=2, verbose=True, solver="lbfgs").fit(X_BINARY, Y_BINARY)
    MLPClassifier(hidden_layer_sizes=2, max_iter=30, verbose=True, early_stopping=True, n_iter_no_change=1, solver="sgd").fit(X_BINARY, Y_BINARY)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out and "Validation score: " in out
    assert "Validation score did not improve more than tol=" in out


def test_gd_solver_trains_the_full_batch_and_partial_fit_continues():
    clf = MLPClassifier((8,), solver="gd", learning_rate_init=0.5, max_iter=30, random_state=0).fit(X_BINARY, Y_BINARY)
    assert clf._trainer.batch_size is None and clf.score(X_BINARY, Y_BINARY) > 0.95
    t = clf.t_
    clf.partial_fit(scipy.sparse.csr_matrix(X_BINARY), Y_BINARY)
    assert clf.t_ == t + len(X_BINARY) and clf.n_iter_ == 1
