"""netcore.MLPClassifier as a scikit-learn estimator."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from netcore import MLPClassifier


@parametrize_with_checks([MLPClassifier(), MLPClassifier(solver="sgd", backend="numpy"), MLPClassifier(solver="gd", learning_rate_init=0.5)])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def test_learns_digits_with_string_labels(digits):
    X_train, X_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier((64,), max_iter=30, random_state=0).fit(X_train, names[y_train])
    assert list(clf.classes_) == sorted(names)
    assert clf.score(X_test, names[y_test]) > 0.93
    assert clf.n_iter_ == len(clf.loss_curve_) <= 30 and clf.n_features_in_ == 64
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)] and [b.shape for b in clf.intercepts_] == [(64,), (10,)]
    np.testing.assert_allclose(clf.predict_proba(X_test[:5]).sum(axis=1), 1.0, rtol=1e-6)


def test_same_seed_same_model_and_pickle_round_trip(digits):
    X_train, X_test, y_train, _ = digits
    a = MLPClassifier((16,), max_iter=5, random_state=3).fit(X_train, y_train)
    b = MLPClassifier((16,), max_iter=5, random_state=3).fit(X_train, y_train)
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.predict_proba(X_test), a.predict_proba(X_test))


def test_partial_fit_is_one_epoch_at_a_time(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((32,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X_train, y_train)
    for _ in range(8):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
    assert clf.n_iter_ == 8 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X_test, y_test) > 0.85


def test_early_stopping_keeps_the_best_validation_score(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=200, random_state=0).fit(X_train, y_train)
    assert clf.n_iter_ < 200
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9


def test_works_in_a_pipeline_and_grid_search(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(max_iter=15, learning_rate_init=0.01, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)], "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_train, y_train)
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] == (32,)
    assert search.score(X_test, y_test) > 0.9


def test_matches_scikit_learn_accuracy_on_digits(digits):
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_train, X_test, y_train, y_test = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier((50,), max_iter=20, random_state=0).fit(X_train, y_train).score(X_test, y_test)
        theirs = SkMLP((50,), max_iter=20, random_state=0).fit(X_train, y_train).score(X_test, y_test)
    assert ours >= theirs - 0.02


@pytest.mark.parametrize(
    "params,message",
    [
        (dict(activation="identity"), "activation 'identity' is not supported"),
        (dict(solver="lbfgs"), "solver 'lbfgs' is not supported"),
        (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes must be positive"),
        (dict(batch_size=0), "batch_size must be 'auto' or a positive integer"),
        (dict(learning_rate_init=-1.0), "learning_rate_init has an invalid value"),
    ],
)
def test_bad_parameters_are_named_at_fit(digits, params, message):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**params).fit(X_train, y_train)
