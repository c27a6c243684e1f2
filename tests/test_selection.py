"""Which backend runs: argument > use() > NETCORE_BACKEND > auto, and every error path."""

from __future__ import annotations

import threading

import pytest

from netcore import backends
from netcore.backends import BackendUnavailableError, get_backend, resolve, use
from netcore import MLP


@pytest.fixture
def only(monkeypatch):
    """Pretend exactly the named backends can run (the others report a reason)."""

    def set_available(*names):
        def fake(name):
            return None if name in names else f"{name} is switched off in this test; install it"

        monkeypatch.setattr(backends, "_reason", fake)

    return set_available


def test_available_lists_every_backend_with_a_reason_when_unavailable():
    status = backends.available()
    assert set(status) == {"numpy", "numba", "cupy", "python", "numba-cuda"}
    assert status["numpy"].ok and status["python"].ok
    for s in status.values():
        assert s.ok == (s.reason == "")


def test_argument_beats_use_beats_environment(monkeypatch):
    monkeypatch.setenv("NETCORE_BACKEND", "python")
    assert get_backend().name == "python"
    with use("numpy"):
        assert get_backend().name == "numpy"
        assert get_backend("python").name == "python"
        assert MLP([3, 2]).backend.name == "numpy"
    assert get_backend().name == "python"


def test_use_blocks_nest_and_restore_on_error():
    with use("python"):
        with use("numpy"):
            assert get_backend().name == "numpy"
        assert get_backend().name == "python"
        with pytest.raises(RuntimeError), use("numpy"):
            raise RuntimeError("boom")
        assert get_backend().name == "python"


def test_use_accepts_a_backend_instance_and_dtype_is_per_network():
    ops = get_backend("python", "float32")
    with use(ops) as selected:
        assert selected is ops
        assert MLP([3, 2], dtype="float64").backend.name == "python"
        assert MLP([3, 2], dtype="float64").dtype == "float64"


def test_use_is_local_to_its_thread():
    seen = {}
    with use("python"):
        t = threading.Thread(target=lambda: seen.update(name=resolve().name))
        t.start()
        t.join()
    assert seen["name"] != "python"


def test_environment_is_read_when_asked_not_at_import(monkeypatch):
    monkeypatch.setenv("NETCORE_BACKEND", "python")
    assert get_backend().name == "python"
    monkeypatch.setenv("NETCORE_BACKEND", " NumPy ")
    assert get_backend().name == "numpy"


def test_empty_environment_variable_means_unset(monkeypatch):
    monkeypatch.setenv("NETCORE_BACKEND", "")
    assert resolve().why.startswith("NETCORE_BACKEND unset; auto")


def test_auto_prefers_cupy_then_numba_then_numpy_and_says_why(only, caplog):
    only("numpy", "numba", "python")
    sel = resolve("auto")
    assert sel.name == "numba"
    assert "cupy unavailable (cupy is switched off in this test)" in sel.why
    only("numpy", "python")
    with caplog.at_level("INFO", logger="netcore"):
        assert get_backend().name == "numpy"
    assert "picked numpy" in caplog.text
    only("numpy", "numba", "cupy", "python")
    assert resolve().name == "cupy"


@pytest.mark.parametrize("how", ["argument", "use", "environment"])
def test_explicit_choice_that_cannot_run_raises_and_never_falls_back(only, monkeypatch, how):
    only("numpy", "python")
    with pytest.raises(BackendUnavailableError, match="backend 'numba' .* cannot run here: numba is switched off in this test; install it"):
        if how == "argument":
            get_backend("numba")
        elif how == "use":
            with use("numba"):
                pass
        else:
            monkeypatch.setenv("NETCORE_BACKEND", "numba")
            MLP([3, 2])


def test_missing_numba_says_how_to_install(monkeypatch):
    import importlib.util

    from netcore.backends.numba_backend import NumbaBackend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    assert NumbaBackend.check() == "Numba is not installed; install it with: pip install numba"


def test_cupy_without_a_device_explains(monkeypatch):
    if backends.available()["cupy"].ok:
        pytest.skip("a CUDA device answers here")
    with pytest.raises(BackendUnavailableError, match=r"backend 'cupy' .*cannot run here: (CuPy is not installed|no CUDA device|CUDA did not answer|the NVIDIA driver is too old)"):
        get_backend("cupy")


def test_cupy_runtime_errors_become_actionable_reasons():
    from netcore.backends.cupy_backend import _unavailable_reason

    class FakeRuntime:
        @staticmethod
        def runtimeGetVersion():
            return 13000

    class FakeCupy:
        __version__ = "14.0.0"

        class cuda:
            runtime = FakeRuntime

    assert "driver is too old for CuPy 14.0.0 (built for CUDA 13)" in _unavailable_reason(RuntimeError("cudaErrorInsufficientDriver"), FakeCupy)
    assert _unavailable_reason(RuntimeError("cudaErrorNoDevice: no CUDA-capable device"), FakeCupy).startswith("no CUDA device found")


@pytest.mark.parametrize("name,suggestion", [("numab", "numba"), ("pyhton", "python"), ("tensorflow", None)])
def test_unknown_name_lists_valid_names_with_a_suggestion(monkeypatch, name, suggestion):
    for where in ("argument", "environment"):
        with pytest.raises(ValueError) as err:
            if where == "argument":
                get_backend(name)
            else:
                monkeypatch.setenv("NETCORE_BACKEND", name)
                get_backend()
        msg = str(err.value)
        assert f"unknown backend {name!r}; valid names are: numpy, numba, cupy, python, numba-cuda, auto." in msg
        assert (f"Did you mean {suggestion!r}?" in msg) == (suggestion is not None)


def test_backend_instances_are_shared_per_name_and_dtype():
    assert get_backend("numpy", "float32") is get_backend("numpy", "float32")
    assert get_backend("numpy", "float32") is not get_backend("numpy", "float64")
    assert get_backend(get_backend("numpy"), "float32").dtype == "float32"


def test_importing_backends_does_not_import_numba_or_cupy():
    import subprocess
    import sys

    code = "import sys, backends, netcore; print('numba' in sys.modules, 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
