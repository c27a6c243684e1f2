"""Every CUDA source the GPU backends can generate, compiled here, with no GPU.

- cupy: each RawKernel source as written and each ElementwiseKernel body, with NVRTC from PyPI
  (CUDA 12 and 13, whichever are installed), for compute_80 (A100) and compute_90 (H100/H200),
  float32 and float64, every activation. The bodies are compiled in a wrapper written here that
  binds them as CuPy does (``const T &b = _raw_b[i]``), and, where CuPy is installed, in the code
  CuPy's own generator emits (it runs without a device; only its launch needs one).
- numba-cuda: each kernel compiled to PTX by Numba with the types the backend launches it with
  (in a process of its own: this session runs Numba's CUDA simulator), float32 kernels checked
  for double-precision arithmetic.

Missing compilers skip with the reason; both come with the ``test`` extra.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from netcore.backends import ACTIVATIONS, cupy_backend
from netcore.backends.cupy_backend import ELEMENTWISE, RAW, raw_source

from . import nvrtc

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("compute_80", "compute_90")
DTYPES = ("float32", "float64")
CTYPES = {"float32": "float", "float64": "double", "uint8": "unsigned char", "int32": "int", "int64": "long long"}

# Which ElementwiseKernel inputs the backend passes as scalars (the rest are arrays), per kernel.
SCALARS = {"from_uint8": {"s"}, "sgd": {"lr"}, "adam": {"lr", "b1", "b2", "eps"}}

NVRTCS = [pytest.param(n, id=str(n).replace(" ", "")) for n in nvrtc.available()] or [
    pytest.param(None, id="no-nvrtc", marks=pytest.mark.skip(reason="no NVRTC library found: pip install nvidia-cuda-nvrtc (in the test extra)"))
]


def every_compiler_arch_and_dtype(test):
    for name, values in (("dtype", DTYPES), ("arch", ARCHS), ("compiler", NVRTCS)):
        test = pytest.mark.parametrize(name, values)(test)
    return test


def entry(ptx: str, name: str) -> bool:
    return f".entry netcore_{name}(" in ptx or f".entry netcore_{name} (" in ptx


def double_ops(ptx: str) -> list[str]:
    return [line.strip() for line in ptx.splitlines() if ".f64" in line]


def _params(spec: str) -> list[tuple[str, str]]:
    return [tuple(p.split()) for p in spec.split(",")]


def wrapper_source(name: str, dtype: str) -> str:
    """ELEMENTWISE[name] as a kernel of its own: arrays bound by reference per element, as CuPy
    binds them, scalars by value, over a grid-stride loop."""
    params_in, params_out, body = ELEMENTWISE[name]
    args, binds = [], []
    for (ctype, var), out in [(p, False) for p in _params(params_in)] + [(p, True) for p in _params(params_out)]:
        ctype = "T" if ctype == "T" else CTYPES[ctype]
        const = "" if out else "const "
        if var in SCALARS.get(name, ()):
            args.append(f"const {ctype} {var}")
        else:
            args.append(f"{const}{ctype}* _raw_{var}")
            binds.append(f"    {const}{ctype} &{var} = _raw_{var}[i];\n")
    return (
        f"typedef {CTYPES[dtype]} T;\n"
        f'extern "C" __global__ void netcore_{name}({", ".join(args)}, long long n) {{\n'
        "  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {\n"
        f"{''.join(binds)}    {body};\n  }}\n}}\n"
    )


def cupy_sources(dtype: str) -> dict[str, str]:
    """What CuPy's ElementwiseKernel generates for each body, for the argument layouts the backend
    passes: all contiguous (reduced to 1-D), and the forward kernels' bias broadcast over rows (2-D)."""
    import cupy
    from cupy._core import _carray, _kernel, _scalar

    ndarray, scalar, indexer = 1, 3, 2  # CuPy's _ArgKind values
    info = _kernel._ArgInfo
    out = {}
    for name, (params_in, params_out, body) in ELEMENTWISE.items():
        kernel = cupy.ElementwiseKernel(params_in, params_out, body, f"netcore_{name}")
        types = {var: np.dtype(dtype if t == "T" else t).type for t, var in _params(params_in) + _params(params_out)}
        _, _, type_map = kernel._decide_params_type(tuple(types[p.name] for p in kernel.in_params), tuple(types[p.name] for p in kernel.out_params))
        for ndim in (1, 2) if name.endswith("_forward") else (1,):
            args = []
            for i, p in enumerate(kernel.params[:-1]):
                if p.name in SCALARS.get(name, ()):
                    args.append(info(scalar, _scalar.CScalar, types[p.name], 0, True, True))
                else:  # in 2-D the bias (the first input) is broadcast: not contiguous
                    args.append(info(ndarray, cupy.ndarray, types[p.name], ndim, not (ndim == 2 and i == 0), True))
            args.append(info(indexer, _carray.Indexer, None, ndim, True, True))
            code = _kernel._get_elementwise_kernel_code(tuple(args), type_map, kernel.params, kernel.operation, kernel.name, kernel.preamble)
            out[f"{name} ({ndim}-D)"] = code
    return out


# -- cupy: RawKernel sources and ElementwiseKernel bodies with NVRTC -------------------------------


def test_the_backend_builds_kernels_only_from_its_tables():
    source = inspect.getsource(cupy_backend)
    assert source.count("ElementwiseKernel(") == 1 and "ELEMENTWISE[name]" in source
    assert source.count("RawKernel(") == 1 and "raw_source(name" in source
    assert {f"{k}_forward" for k in ACTIVATIONS} | {f"{k}_backward" for k in ACTIVATIONS} <= set(ELEMENTWISE)
    for name, scalars in SCALARS.items():
        assert scalars <= {var for _, var in _params(ELEMENTWISE[name][0])}, name


@every_compiler_arch_and_dtype
def test_raw_kernels_compile(compiler, arch, dtype):
    for name in RAW:
        ptx = compiler.compile(raw_source(name, dtype), [f"-arch={arch}", "--std=c++17"], f"{name}.cu")
        assert entry(ptx, name), name


@every_compiler_arch_and_dtype
def test_elementwise_bodies_compile(compiler, arch, dtype):
    for name in ELEMENTWISE:
        ptx = compiler.compile(wrapper_source(name, dtype), [f"-arch={arch}", "--std=c++17"], f"{name}.cu")
        assert entry(ptx, name), name
        if dtype == "float32":
            assert double_ops(ptx) == [], f"{name} computes in double in float32: {double_ops(ptx)[:3]}"


@every_compiler_arch_and_dtype
def test_elementwise_bodies_compile_as_cupy_generates_them(compiler, arch, dtype):
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy is not installed here, so its code generator cannot run (the bodies were compiled in the wrapper)")
    from cupy._core import core

    header = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    options = [*core.assemble_cupy_compiler_options(()), f"-arch={arch}"]
    for label, code in cupy_sources(dtype).items():
        name = label.split()[0]
        ptx = compiler.compile(header + code, options, f"{name}.cu")
        assert entry(ptx, name), label


# -- numba-cuda: every kernel to PTX ----------------------------------------------------------------


@pytest.fixture(scope="module")
def numba_ptx() -> dict:
    """tests/numba_cuda_ptx.py's report for compute capabilities 8.0 and 9.0 (compiled in parallel)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])

    def compile_for(cc: str) -> dict:
        run = subprocess.run([sys.executable, "-m", "tests.numba_cuda_ptx", cc], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            return {"error": run.stderr[-3000:]}
        return json.loads(run.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(("8.0", "9.0"), pool.map(compile_for, ("8.0", "9.0"))))


def _report(numba_ptx: dict, cc: str) -> dict:
    report = numba_ptx[cc]
    if "skip" in report:
        pytest.skip(report["skip"])
    assert "error" not in report, report["error"]
    return report["kernels"]


@pytest.mark.parametrize("cc", ["8.0", "9.0"])
def test_numba_cuda_kernels_compile_to_ptx(numba_ptx, cc):
    kernels = _report(numba_ptx, cc)
    failed = {f"{dtype} {name}": r["error"] for dtype, rs in kernels.items() for name, r in rs.items() if "error" in r}
    assert failed == {}
    assert all(r["entry"] for rs in kernels.values() for r in rs.values())
    assert len(kernels["float32"]) >= 18


@pytest.mark.parametrize("cc", ["8.0", "9.0"])
def test_numba_cuda_float32_kernels_do_no_double_arithmetic(numba_ptx, cc):
    kernels = _report(numba_ptx, cc)
    doubles = {name: r["f64"][:3] for name, r in kernels["float32"].items() if r.get("f64")}
    assert doubles == {}
    assert any(r.get("f64") for r in kernels["float64"].values())  # the check sees doubles where they are
