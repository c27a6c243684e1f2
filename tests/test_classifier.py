"""netcore.MLPClassifier and MLPRegressor as scikit-learn estimators: scikit-learn's checks, the same
numbers as scikit-learn's own MLP for the same seed, every backend, sparse and uint8 inputs."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn import neural_network as sk
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from netcore import MLP, MLPClassifier, MLPRegressor

from .conftest import backend_params


@parametrize_with_checks(
    [
        MLPClassifier(backend="numpy"),
        MLPClassifier(backend="numba"),
        MLPClassifier(solver="lbfgs", backend="numba"),
        MLPClassifier(solver="sgd", backend="numpy", learning_rate="adaptive"),
        MLPClassifier(solver="gd", learning_rate_init=0.5, backend="numba"),
        MLPRegressor(backend="numpy"),
        MLPRegressor(backend="numba"),
        MLPRegressor(solver="lbfgs", backend="numba"),
        MLPRegressor(solver="sgd", backend="numba", learning_rate="adaptive", learning_rate_init=0.01),
    ],
    expected_failed_checks=lambda est: (
        {"check_classifiers_multilabel_output_format_predict_proba": "L-BFGS fits the check's data until a probability is exactly 1.0; "
         "scikit-learn's own MLPClassifier(solver='lbfgs') fails this check the same way"}
        if isinstance(est, MLPClassifier) and est.solver == "lbfgs" else {}
    ),
)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


def sklearn_and_netcore(kind: str, backend: str, X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = getattr(sk, kind)(**params).fit(X, y)
        ours = globals()[kind](backend=backend, **params).fit(X, y)
    return theirs, ours


X_DIGITS, Y_DIGITS = load_digits(return_X_y=True)
X_DIGITS, Y_DIGITS = X_DIGITS[:300] / 16.0, Y_DIGITS[:300]
X_REG, Y_REG = make_regression(120, 8, n_targets=2, random_state=0)
Y_REG /= 100
X_ML, Y_ML = make_multilabel_classification(80, random_state=0)

SAME_NUMBERS = [
    ("MLPClassifier", dict(solver="adam", max_iter=5), X_DIGITS, Y_DIGITS),
    ("MLPClassifier", dict(solver="sgd", max_iter=5, learning_rate="invscaling", momentum=0.5), X_DIGITS, Y_DIGITS),
    ("MLPClassifier", dict(solver="sgd", max_iter=15, learning_rate="adaptive", early_stopping=True, tol=0.1), X_DIGITS, Y_DIGITS),
    ("MLPClassifier", dict(solver="sgd", max_iter=10, nesterovs_momentum=False, early_stopping=True), X_DIGITS, Y_DIGITS % 2),
    ("MLPClassifier", dict(solver="lbfgs", max_iter=15, activation="tanh"), X_DIGITS, Y_DIGITS),
    ("MLPClassifier", dict(solver="lbfgs", max_iter=15, activation="logistic"), X_DIGITS, Y_DIGITS % 2),
    ("MLPClassifier", dict(solver="adam", max_iter=10, activation="identity", batch_size=32), X_ML, Y_ML),
    ("MLPClassifier", dict(solver="adam", max_iter=5), scipy.sparse.csr_matrix(X_DIGITS), Y_DIGITS),
    ("MLPRegressor", dict(solver="adam", max_iter=10, beta_1=0.8, beta_2=0.99, epsilon=1e-6), X_REG, Y_REG[:, 0]),
    ("MLPRegressor", dict(solver="sgd", max_iter=10, batch_size=30, alpha=0.0), X_REG, Y_REG),
    ("MLPRegressor", dict(solver="lbfgs", max_iter=15, loss="poisson"), X_REG, np.abs(Y_REG[:, 0])),
]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kind,params,X,y", SAME_NUMBERS, ids=lambda v: "-".join(f"{k}={v}" for k, v in v.items()) if isinstance(v, dict) else None)
def test_same_numbers_as_scikit_learn_for_the_same_seed(backend, kind, params, X, y):
    """Same initial weights, same batches in the same order, same updates: the fitted model is
    scikit-learn's, to rounding (float64)."""
    theirs, ours = sklearn_and_netcore(kind, backend, X, y, hidden_layer_sizes=(20,), random_state=0, **params)
    assert ours.n_iter_ == theirs.n_iter_
    for mine, their in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, their, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=1e-9)
    for attr in ("loss_curve_", "validation_scores_"):
        if getattr(theirs, attr, None) is not None:
            np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=1e-9, atol=1e-12)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_) if hasattr(theirs, "best_validation_score_") else True
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("estimator", ["MLPClassifier", "MLPRegressor"])
def test_every_backend_fits_what_numpy_float64_fits(backend_name, estimator, solver):
    """Sparse inputs and the non-softmax outputs included: the numba fused pass hands them on."""
    X = scipy.sparse.csr_matrix(X_DIGITS[:60] * (X_DIGITS[:60] > 0.5))
    y = Y_DIGITS[:60] % 2 if estimator == "MLPClassifier" else Y_REG[:60]
    fits = []
    for backend in ("numpy", backend_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(globals()[estimator](hidden_layer_sizes=(6,), solver=solver, max_iter=8, random_state=0, backend=backend, dtype="float64").fit(X, y))
    tol = dict(rtol=1e-5, atol=1e-7) if backend_name in ("cupy", "numba-cuda") else dict(rtol=1e-8, atol=1e-10)
    for mine, ref in zip(fits[1].coefs_, fits[0].coefs_):
        np.testing.assert_allclose(mine, ref, **tol)


def test_sparse_inputs_are_not_densified_whole(monkeypatch):
    """The sparse rows reach the network as CSR: toarray() of the whole matrix never runs."""
    X = scipy.sparse.random(200, 50, density=0.05, format="csr", random_state=0)
    y = np.arange(200) % 3

    for cls in (scipy.sparse.csr_matrix, scipy.sparse.csr_array):
        toarray = cls.toarray

        def refuse(self, *args, _toarray=toarray, **kwargs):
            if self.shape[0] >= 100:  # mini-batch rows (and scikit-learn's label matrices) may go dense
                assert self.shape[1] != X.shape[1], "the whole sparse matrix was densified"
            return _toarray(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", refuse)
    for backend in ("numpy", "numba", "python"):
        clf = MLPClassifier((8,), max_iter=2, random_state=0, backend=backend).fit(X, y)
        assert clf.predict(X).shape == (200,)
    MLPClassifier((8,), solver="lbfgs", max_iter=3, random_state=0, backend="numba").fit(X, y)


def test_uint8_is_read_as_intensities_like_mlp():
    """A uint8 X means 0..255 intensities to MLPClassifier as to MLP: the same model as X / 255."""
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (120, 20)).astype(np.uint8)
    y = (X[:, 0] > X[:, 1]).astype(int) + (X[:, 2] > 128)
    raw = MLPClassifier((10,), max_iter=5, random_state=0).fit(X, y)
    scaled = MLPClassifier((10,), max_iter=5, random_state=0).fit(X / 255.0, y)
    for a, b in zip(raw.coefs_, scaled.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_allclose(raw.predict_proba(X), scaled.predict_proba(X / 255.0), rtol=1e-10)
    net = MLP([20, 10, 3], "relu", backend="numpy", dtype="float64", output="softmax")
    net.set_parameters([(c.T, b) for c, b in zip(raw.coefs_, raw.intercepts_)])
    np.testing.assert_allclose(net.predict_proba(X), raw.predict_proba(X), rtol=1e-10)


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
    c.partial_fit(X_train, y_train)  # the trainer and its optimizer state travel along
    assert c.t_ == a.t_ + len(X_train)


def test_coefs_can_be_replaced_and_edited_in_place(digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier((16,), max_iter=3, random_state=0).fit(X_train, y_train)
    before = clf.predict_proba(X_test)
    clf.coefs_[1] *= 0
    clf.intercepts_[1][:] = np.arange(10)
    np.testing.assert_allclose(clf.predict_proba(X_test), np.tile(np.exp(np.arange(10)) / np.exp(np.arange(10)).sum(), (len(X_test), 1)))
    clf.coefs_ = [c.copy() for c in clf.coefs_]
    assert not np.allclose(clf.predict_proba(X_test), before)


def test_partial_fit_is_one_epoch_at_a_time(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((32,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X_train, y_train)
    for _ in range(8):
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 8 and clf.t_ == 8 * len(X_train)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X_test, y_test) > 0.85
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        clf.partial_fit(X_train, y_train, classes=np.arange(11))
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")


def test_multilabel_probabilities_are_per_label():
    clf = MLPClassifier((30,), solver="lbfgs", random_state=0).fit(X_ML, Y_ML)
    proba = clf.predict_proba(X_ML)
    assert proba.shape == Y_ML.shape and clf.out_activation_ == "logistic" and clf.n_outputs_ == Y_ML.shape[1]
    np.testing.assert_array_equal(clf.predict(X_ML), proba > 0.5)
    assert not np.allclose(proba.sum(axis=1), 1.0)


def test_early_stopping_keeps_the_best_validation_score(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=200, random_state=0).fit(X_train, y_train)
    assert clf.n_iter_ < 200 and clf.best_loss_ is None
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.8
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)


def test_works_in_a_pipeline_and_grid_search(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(max_iter=15, learning_rate_init=0.01, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)], "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X_train, y_train)
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] == (32,)
    assert search.score(X_test, y_test) > 0.9


@pytest.mark.parametrize(
    "params,message",
    [
        (dict(activation="sigmoid"), "The 'activation' parameter must be one of 'identity', 'logistic', 'tanh', 'relu'; got 'sigmoid'"),
        (dict(solver="newton"), "The 'solver' parameter must be one of 'lbfgs', 'sgd', 'adam', 'gd'"),
        (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes must be > 0"),
        (dict(batch_size=0), "The 'batch_size' parameter must be 'auto' or an integer >= 1"),
        (dict(learning_rate_init=-1.0), "The 'learning_rate_init' parameter must be a number > 0"),
        (dict(n_iter_no_change=0), "must be an integer >= 1 or np.inf"),
        (dict(momentum=1.5), "The 'momentum' parameter must be a number in"),
        (dict(learning_rate="cosine"), "The 'learning_rate' parameter must be one of"),
    ],
)
def test_bad_parameters_are_named_at_fit(digits, params, message):
    X_train, _, y_train, _ = digits
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MLPClassifier(**params).fit(X_train, y_train)


@pytest.mark.parametrize("name", backend_params(["python"]))
def test_the_python_baseline_runs_the_estimators(name):
    """The loops backend: same model as numpy's, on a tiny problem (it computes in float64)."""
    X, y = X_DIGITS[:30, :12], Y_DIGITS[:30] % 3
    ref = MLPClassifier((4,), solver="lbfgs", max_iter=5, random_state=0, backend="numpy").fit(X, y)
    mine = MLPClassifier((4,), solver="lbfgs", max_iter=5, random_state=0, backend=name).fit(X, y)
    np.testing.assert_allclose(mine.coefs_[0], ref.coefs_[0], rtol=1e-8)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0, backend=name).fit(X, Y_REG[:30])
    assert reg.predict(X).shape == (30, 2)
