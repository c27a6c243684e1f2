"""The GPU check: GPU tests, then full-batch epoch timings, written to ``$OUT`` (or ``--out``).

    PYTHONPATH=. python -m benchmarks.gpu_check            # about 2 minutes on one GPU

1. runs the GPU tests (cupy and numba-cuda on the real device, graph replay, no host sync);
2. times one full-batch epoch of the tutorial network on 60,000 x 784 uint8 images: CuPy with
   and without graph replay, Numba CUDA, PyTorch CUDA (the peer) and the CPU numba backend, each
   the median of ``--rounds`` epochs after warm-up, GPU ones timed with CUDA events;
3. checks every GPU backend against the float64 NumPy path after 20 training steps;
4. writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_tests.log``. Each part records its own
   error and the rest still run, so a partial result still comes back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (784, 16, 16, 10)


def gpu_tests(out: Path) -> dict:
    cmd = [sys.executable, "-m", "pytest", "tests/test_gpu.py", "tests/test_numba_cuda.py", "tests/test_ops.py", "tests/test_network.py",
           "tests/test_tutorial.py", "-k", "cupy or numba-cuda or numba_cuda or gpu", "-q", "-p", "no:cacheprovider"]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    start = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    (out / "gpu_tests.log").write_text(run.stdout + run.stderr)
    last = [line for line in run.stdout.splitlines() if line.strip()][-1:] or [""]
    return {"returncode": run.returncode, "summary": last[0], "seconds": time.perf_counter() - start}


def median_ms(fn, rounds: int, timer) -> float:
    for _ in range(3):
        fn()
    return float(np.median([timer(fn) for _ in range(rounds)]))


def cupy_timer(fn) -> float:
    import cupy as cp

    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end)


def numba_cuda_timer(fn) -> float:
    from numba import cuda

    start, end = cuda.event(), cuda.event()
    start.record()
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


def timings(X: np.ndarray, y: np.ndarray, rounds: int) -> list[dict]:
    from netcore import MLP

    results = []

    def case(label, make, timer):
        try:
            fn = make()
            results.append({"case": label, "ms": median_ms(fn, rounds, timer)})
        except Exception as exc:  # record and go on: one failing case must not hide the others
            results.append({"case": label, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]})
        print(results[-1].get("ms", results[-1].get("error")), label, flush=True)

    def netcore_step(backend, dtype, inp, graph=False):
        def make():
            net = MLP(SIZES, backend=backend, dtype=dtype, seed=2)
            batch = net.prepare(X if inp == "uint8" else (X / 255.0).astype(dtype), y)
            if not graph:
                return lambda: net.train_step(batch.X, batch.Y, 0.1)
            _, replay = net.backend.capture(lambda: net.train_step(batch.X, batch.Y, 0.1))
            return replay
        return make

    case("cupy float32, uint8 input, graph replay", netcore_step("cupy", "float32", "uint8", graph=True), cupy_timer)
    case("cupy float32, uint8 input, no graph", netcore_step("cupy", "float32", "uint8"), cupy_timer)
    case("cupy float64, float input, graph replay", netcore_step("cupy", "float64", "float", graph=True), cupy_timer)
    case("numba-cuda float32, uint8 input", netcore_step("numba-cuda", "float32", "uint8"), numba_cuda_timer)

    def torch_step():
        import torch

        dev = torch.device("cuda")
        Xt = torch.from_numpy((X / 255.0).astype(np.float32)).to(dev)
        yt = torch.from_numpy(y.astype(np.int64)).to(dev)
        torch.manual_seed(2)
        model = torch.nn.Sequential(torch.nn.Linear(784, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(), torch.nn.Linear(16, 10)).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xt), yt).backward()
            opt.step()

        return step

    case("peer: PyTorch CUDA float32 (eager)", torch_step, torch_timer)
    case("numba (CPU, all cores) float32, uint8 input", netcore_step("numba", "float32", "uint8"), cpu_timer)
    return results


def agreement(X: np.ndarray, y: np.ndarray) -> list[dict]:
    """20 full-batch steps on each GPU backend against the float64 NumPy path."""
    from netcore import MLP, SGD, Trainer

    X, y = X[:2000], y[:2000]
    ref = MLP(SIZES, backend="numpy", dtype="float64", seed=2)
    Trainer(ref, SGD(0.5)).fit(X, y, 20)
    out = []
    for backend, dtype, graph in (("cupy", "float32", False), ("cupy", "float32", True), ("cupy", "float64", True), ("numba-cuda", "float32", False)):
        try:
            net = MLP(SIZES, backend=backend, dtype=dtype, seed=2)
            Trainer(net, SGD(0.5), graph=graph).fit(X, y, 20)
            worst = max(float(np.max(np.abs(W - V)) / np.max(np.abs(V))) for (W, _), (V, _) in zip(net.get_parameters(), ref.get_parameters()))
            tol = 1e-4 if dtype == "float32" else 1e-10
            out.append({"backend": backend, "dtype": dtype, "graph": graph, "max_rel_diff": worst, "tolerance": tol, "ok": worst < tol})
        except Exception as exc:
            out.append({"backend": backend, "dtype": dtype, "graph": graph, "error": f"{type(exc).__name__}: {exc}"})
        print(out[-1], flush=True)
    return out


def table(results: list[dict], info: dict, samples: int) -> str:
    lines = [f"GPU check, {info['date']}, {info['device']}", "", f"| full-batch epoch, 784-16-16-10, {samples:,} samples | ms | vs PyTorch CUDA |", "|---|---:|---:|"]
    torch_ms = next((r["ms"] for r in results if r["case"].startswith("peer") and "ms" in r), None)
    for r in results:
        if "ms" in r:
            ratio = f"{torch_ms / r['ms']:.2f}x" if torch_ms else ""
            lines.append(f"| {r['case']} | {r['ms']:.3f} | {ratio} |")
        else:
            lines.append(f"| {r['case']} | failed: {r['error'][:80]} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-check"), help="output folder (default: $OUT, else ./gpu-check)")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))

    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "device": "unknown"}
    try:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(0)
        info.update(device=props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]), cupy=cp.__version__,
                    cuda_runtime=cp.cuda.runtime.runtimeGetVersion(), driver=cp.cuda.runtime.driverGetVersion())
    except Exception as exc:
        info["device_error"] = str(exc)
    report = {"info": info}
    if not args.skip_tests:
        report["tests"] = gpu_tests(out)
        print("tests:", report["tests"]["summary"], flush=True)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (args.samples, 784), dtype=np.uint8)
    y = rng.integers(0, 10, args.samples)
    report["timings"] = timings(X, y, args.rounds)
    report["agreement"] = agreement(X, y)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    text = table(report["timings"], info, args.samples)
    (out / "gpu_check.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
