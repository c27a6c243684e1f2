"""The GPU check: GPU tests, then full-batch step timings and an agreement check, written to ``$OUT``.

    PYTHONPATH=. python -m benchmarks.gpu_check            # within 4 minutes: --budget is 225 s

Needs only what a GPU machine has: CuPy, Numba, PyTorch and pytest (hypothesis, scikit-learn and
numba-cuda are used where installed, not required). Parts, in order, each under what is left of
``--budget`` seconds; each writes its result as soon as it has it (``gpu_check.json`` and
``gpu_check.md``, rewritten whole after every part and case), so a run cut short still reports:

1. ``tests``: the GPU tests (cupy and numba-cuda on the device, graph replay, the CUDA sources),
   a pytest subprocess whose output is streamed to the console and to ``gpu_tests.log``, killed
   after ``--test-timeout`` seconds. Without hypothesis its property tests are skipped (a stand-in
   module says so); the rest still run.
2. ``timings``: one full-batch training step of the tutorial network (784-16-16-10 tanh) on
   ``--samples`` random uint8 images, the median of ``--rounds`` after warm-up: CuPy with and without
   graph replay, Numba CUDA, PyTorch CUDA (the peer), the CPU numba backend. GPU steps are timed
   with CUDA events recorded on the stream the step (or the graph replay) runs on: the current one.
   Each case keeps its network and batch alive, and waits for the device, until its replays are done.
3. ``agreement``: 20 full-batch SGD steps of each GPU backend against the float64 NumPy path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (784, 16, 16, 10)
TEST_FILES = (
    "tests/test_gpu.py", "tests/test_numba_cuda.py", "tests/test_ops.py", "tests/test_network.py", "tests/test_trainer.py",
    "tests/test_tutorial.py", "tests/test_gpu_without_device.py", "tests/test_cuda_sources.py",
)
TEST_FILTER = "cupy or numba-cuda or numba_cuda or gpu or cuda"

# Stands in for hypothesis where it is not installed: property tests skip and say why.
_NO_HYPOTHESIS = {
    "__init__.py": (
        "import pytest\n"
        "class _Anything:\n"
        "    def __getattr__(self, name):\n"
        "        return name\n"
        "HealthCheck = _Anything()\n"
        "def settings(*args, **kwargs):\n"
        "    return lambda test: test\n"
        "def given(*args, **kwargs):\n"
        "    return pytest.mark.skip(reason='hypothesis is not installed here (benchmarks.gpu_check stand-in)')\n"
    ),
    "strategies.py": "def __getattr__(name):\n    return lambda *args, **kwargs: None\n",
}


class Report:
    """The results so far, written out whole after every change (a run cut short still reports)."""

    def __init__(self, out: Path, info: dict) -> None:
        self.out, self.data = out, {"info": info, "parts": {}}

    def set(self, part: str, value) -> None:
        self.data["parts"][part] = value
        self.write()

    def write(self) -> None:
        for name, text in (("gpu_check.json", json.dumps(self.data, indent=2, default=str)), ("gpu_check.md", table(self.data))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.out / name)


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# -- 1. tests -----------------------------------------------------------------------------------


def importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def test_command(stand_in_dir: Path) -> tuple[list[str], dict, list[str]]:
    """The pytest command, its environment, and notes on what was adapted to this machine."""
    cmd = [sys.executable, "-m", "pytest", *TEST_FILES, "-k", TEST_FILTER, "-q", "-p", "no:cacheprovider", "-rs"]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    paths = [str(ROOT)]
    notes = []
    if not importable("hypothesis"):
        pkg = stand_in_dir / "hypothesis"
        pkg.mkdir(parents=True, exist_ok=True)
        for name, text in _NO_HYPOTHESIS.items():
            (pkg / name).write_text(text)
        paths.append(str(stand_in_dir))
        notes.append("hypothesis is not installed: its property tests are skipped by a stand-in module")
    if not importable("sklearn"):
        cmd += ["-o", "filterwarnings=default"]  # pyproject's filter names a scikit-learn warning
        notes.append("scikit-learn is not installed: pyproject's warning filter is replaced")
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    return cmd, env, notes


def gpu_tests(out: Path, timeout: float) -> dict:
    """Run the GPU tests, streaming their output; kill them (the whole process group) at ``timeout``."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as stand_ins:
        cmd, env, notes = test_command(Path(stand_ins))
        for note in notes:
            print("tests:", note, flush=True)
        last = []
        with open(out / "gpu_tests.log", "w") as log:
            log.write(" ".join(cmd) + "\n" + "".join(f"note: {n}\n" for n in notes))
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)

            def pump():
                for line in proc.stdout:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    log.write(line)
                    log.flush()
                    if line.strip():
                        last[:] = [line.strip()]

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                code = proc.wait(timeout=max(1.0, timeout))
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                    try:
                        os.killpg(proc.pid, sig)
                        code = proc.wait(timeout=wait)
                        break
                    except (subprocess.TimeoutExpired, ProcessLookupError):
                        code = None
            reader.join(timeout=10)
            if timed_out:
                log.write(f"\ngpu_check: the tests were stopped after {timeout:.0f} s\n")
    result = {"returncode": code, "summary": last[0] if last else "", "seconds": round(time.monotonic() - start, 1), "notes": notes}
    if timed_out:
        result["error"] = f"timed out after {timeout:.0f} s (raise --test-timeout)"
    return result


# -- 2. timings ---------------------------------------------------------------------------------


def cupy_timer(fn) -> float:
    """Milliseconds of ``fn()``'s device work, from events on the current stream: the stream
    cupy's ops and its graph replays run on (``CupyBackend.capture``'s ordering rule)."""
    import cupy as cp

    stream = cp.cuda.get_current_stream()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(stream)
    fn()
    end.record(stream)
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end)


def numba_cuda_timer(fn) -> float:
    from numba import cuda

    start, end = cuda.event(), cuda.event()
    start.record()  # the default stream, where the numba-cuda backend launches
    fn()
    end.record()
    end.synchronize()
    return cuda.event_elapsed_time(start, end)


def torch_timer(fn) -> float:
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def cpu_timer(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def device_sync() -> None:
    """Wait for every GPU library's queued work, so nothing queued outlives the arrays it uses."""
    for module, call in (("cupy", lambda m: m.cuda.Device().synchronize()), ("torch", lambda m: m.cuda.synchronize())):
        if module in sys.modules:
            try:
                call(sys.modules[module])
            except Exception:
                pass
    if "numba.cuda" in sys.modules:
        try:
            sys.modules["numba.cuda"].synchronize()
        except Exception:
            pass


def netcore_case(X: np.ndarray, y: np.ndarray, backend: str, dtype: str, graph: bool = False):
    """A step of the tutorial network on ``backend``; returns ``(step, keep)``: ``keep`` holds the
    network, the batch and the replay, which the recorded graph uses but does not hold."""
    from netcore import MLP

    net = MLP(SIZES, backend=backend, dtype=dtype, seed=2)
    batch = net.prepare(X, y)
    if not graph:
        return (lambda: net.train_step(batch.X, batch.Y, 0.1)), (net, batch)
    _, replay = net.backend.capture(lambda: net.train_step(batch.X, batch.Y, 0.1))
    return replay, (net, batch, replay)


def torch_case(X: np.ndarray, y: np.ndarray):
    import torch

    dev = torch.device("cuda")
    Xt = torch.from_numpy(X).to(dev).float().div_(255)
    yt = torch.from_numpy(y.astype(np.int64)).to(dev)
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(Xt), yt).backward()
        opt.step()

    return step, (model, Xt, yt, opt)


def timings(X: np.ndarray, y: np.ndarray, rounds: int, budget: Budget, report: Report, reserve: float) -> list[dict]:
    results: list[dict] = []
    cases = [
        ("cupy float32, uint8 input, graph replay", lambda: netcore_case(X, y, "cupy", "float32", graph=True), cupy_timer),
        ("cupy float32, uint8 input, no graph", lambda: netcore_case(X, y, "cupy", "float32"), cupy_timer),
        ("cupy float64, uint8 input, graph replay", lambda: netcore_case(X, y, "cupy", "float64", graph=True), cupy_timer),
        ("numba-cuda float32, uint8 input", lambda: netcore_case(X, y, "numba-cuda", "float32"), numba_cuda_timer),
        ("peer: PyTorch CUDA float32 (eager)", lambda: torch_case(X, y), torch_timer),
        ("numba (CPU, all cores) float32, uint8 input", lambda: netcore_case(X, y, "numba", "float32"), cpu_timer),
    ]
    for label, make, timer in cases:
        if budget.left() < reserve:
            results.append({"case": label, "skipped": f"out of time (--budget): {budget.left():.0f} s left"})
        else:
            start = time.monotonic()
            keep = None
            try:
                fn, keep = make()
                for _ in range(3):  # warm-up: compiles, caches, clocks
                    fn()
                samples = [timer(fn) for _ in range(rounds)]
                results.append({"case": label, "ms": float(np.median(samples)), "min_ms": float(np.min(samples)), "rounds": rounds})
            except Exception as exc:  # record and go on: one failing case must not hide the others
                results.append({"case": label, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]})
            finally:
                device_sync()  # replays still queued run before their network and batch are let go
                del keep
            results[-1]["seconds"] = round(time.monotonic() - start, 1)
        print("timings:", {k: v for k, v in results[-1].items() if k != "trace"}, flush=True)
        report.set("timings", results)
    return results


# -- 3. agreement -------------------------------------------------------------------------------


def agreement(X: np.ndarray, y: np.ndarray, budget: Budget, report: Report) -> list[dict]:
    """20 full-batch steps on each GPU backend against the float64 NumPy path."""
    from netcore import MLP, SGD, Trainer

    X, y = X[:2000], y[:2000]
    ref = MLP(SIZES, backend="numpy", dtype="float64", seed=2)
    Trainer(ref, SGD(0.5)).fit(X, y, 20)
    out: list[dict] = []
    for backend, dtype, graph in (("cupy", "float32", False), ("cupy", "float32", True), ("cupy", "float64", True), ("numba-cuda", "float32", False)):
        case = {"backend": backend, "dtype": dtype, "graph": graph}
        if budget.left() < 5:
            case["skipped"] = "out of time (--budget)"
        else:
            try:
                net = MLP(SIZES, backend=backend, dtype=dtype, seed=2)
                Trainer(net, SGD(0.5), graph=graph).fit(X, y, 20)
                worst = max(float(np.max(np.abs(W - V)) / np.max(np.abs(V))) for (W, _), (V, _) in zip(net.get_parameters(), ref.get_parameters()))
                tol = 1e-4 if dtype == "float32" else 1e-10
                case.update(max_rel_diff=worst, tolerance=tol, ok=worst < tol)
            except Exception as exc:
                case["error"] = f"{type(exc).__name__}: {exc}"
        out.append(case)
        print("agreement:", out[-1], flush=True)
        report.set("agreement", out)
    return out


# -- output ---------------------------------------------------------------------------------------


def table(data: dict) -> str:
    info, parts = data["info"], data["parts"]
    lines = [f"GPU check, {info.get('date')}, {info.get('device')}", ""]
    tests = parts.get("tests")
    if tests:
        lines += [f"tests: {tests.get('error') or tests.get('skipped') or tests.get('summary')} ({tests.get('seconds', 0)} s)", ""]
    results = parts.get("timings") or []
    if results:
        lines += [f"| full-batch step, 784-16-16-10, {info.get('samples', 0):,} samples | ms (median) | vs PyTorch CUDA |", "|---|---:|---:|"]
        torch_ms = next((r["ms"] for r in results if r["case"].startswith("peer") and "ms" in r), None)
        for r in results:
            if "ms" in r:
                ratio = f"{torch_ms / r['ms']:.2f}x" if torch_ms else ""
                lines.append(f"| {r['case']} | {r['ms']:.3f} | {ratio} |")
            else:
                lines.append(f"| {r['case']} | {'skipped' if 'skipped' in r else 'failed'}: {(r.get('error') or r.get('skipped'))[:80]} | |")
    for r in parts.get("agreement") or []:
        what = f"{r['backend']} {r['dtype']}{' graph' if r['graph'] else ''}"
        verdict = r.get("error") or r.get("skipped") or f"max relative difference {r['max_rel_diff']:.2e} ({'ok' if r['ok'] else 'TOO LARGE'})"
        lines.append(f"- agreement with float64 NumPy after 20 steps, {what}: {verdict}")
    return "\n".join(lines) + "\n"


def machine_info(samples: int) -> dict:
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "device": "unknown", "samples": samples}
    try:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(0)
        info.update(device=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]), cupy=cp.__version__,
                    cuda_runtime=cp.cuda.runtime.runtimeGetVersion(), driver=cp.cuda.runtime.driverGetVersion())
    except Exception as exc:
        info["device_error"] = f"{type(exc).__name__}: {exc}"
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-check",
                        help="folder for gpu_check.json, gpu_check.md and gpu_tests.log (default: $OUT, else ./gpu-check)")
    parser.add_argument("--samples", type=int, default=60_000, help="samples in the timed full batch (default: 60,000, MNIST's training set)")
    parser.add_argument("--rounds", type=int, default=20, help="timed steps per case after 3 warm-up steps; the median is reported (default: 20)")
    parser.add_argument("--budget", type=float, default=225.0,
                        help="seconds for the whole check; a part or case that would start with too little left is skipped and says so (default: 225)")
    parser.add_argument("--test-timeout", type=float, default=120.0,
                        help="seconds before the GPU tests are stopped (default: 120; at most what leaves 60 s of the budget for the rest)")
    parser.add_argument("--skip-tests", action="store_true", help="skip part 1, the GPU tests")
    parser.add_argument("--skip-timings", action="store_true", help="skip part 2, the step timings")
    parser.add_argument("--skip-agreement", action="store_true", help="skip part 3, the agreement with float64 NumPy")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    budget = Budget(args.budget)
    report = Report(out, machine_info(args.samples))
    report.write()
    if not args.skip_tests:
        report.set("tests", gpu_tests(out, min(args.test_timeout, budget.left() - 60)))
        print("tests:", report.data["parts"]["tests"]["summary"], flush=True)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.samples, 784), dtype=np.uint8)
    y = rng.integers(0, 10, args.samples)
    if not args.skip_timings:
        timings(X, y, args.rounds, budget, report, reserve=0 if args.skip_agreement else 20)
    if not args.skip_agreement:
        agreement(X, y, budget, report)
    report.write()
    print(table(report.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
