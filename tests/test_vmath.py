"""The vectorisable float64 exp and tanh (backends/numba_vmath.py) against 80-bit references.

They are compiled here the way the fused pass compiles them: inlined into a loop under the fused
kernels' fast-math flags, so a rewrite that those flags allow (and that would lose the range
reduction's precision) shows up as an error here. The error is measured in float64 ulps of the
exact value, on a dense sweep and on the awkward places: tiny |x|, tanh's branch point, the
edges of exp's range (subnormal results, overflow), infinities and NaN.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("numba")

from numba import njit  # noqa: E402

from netcore.backends import numba_intrinsics as intrinsics  # noqa: E402
from netcore.backends import numba_kernels as kernels  # noqa: E402
from netcore.backends import numba_vmath as vmath  # noqa: E402

#: The stated accuracy (measured: 1.34 ulp for tanh, 1.60 for exp on these sets)
MAX_ULP = 4.0

EXTENDED = np.finfo(np.longdouble).nmant >= 63
needs_extended = pytest.mark.skipif(not EXTENDED, reason="the reference needs an 80-bit long double (x86); here long double is float64")

_FLAGS = dict(intrinsics.OPTS, cache=False)


@njit(**_FLAGS)
def _tanh_loop(x, out):
    for i in range(x.size):
        out[i] = vmath.vtanh(x[i])


@njit(**_FLAGS)
def _exp_loop(x, out):
    for i in range(x.size):
        out[i] = vmath.vexp(x[i])


@njit(**_FLAGS)
def _sigmoid_loop(x, out):
    for i in range(x.size):
        out[i] = vmath.vsigmoid(x[i])


def _apply(loop, x):
    out = np.empty_like(x)
    loop(x, out)
    return out


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float64 spacing at ``exact`` (the subnormal spacing near 0)."""
    spacing = np.spacing(np.abs(exact.astype(np.float64))).astype(np.longdouble)
    return (np.abs(got.astype(np.longdouble) - exact) / spacing).astype(np.float64)


def _points(rng, lo, hi, n):
    return np.concatenate([np.linspace(lo, hi, n), rng.uniform(lo, hi, n)])


def _tanh_points():
    rng = np.random.default_rng(1)
    tiny = np.concatenate([10.0 ** rng.uniform(-320, -4, 20_000), [5e-324, 2.2250738585072014e-308, 1e-300, 1e-8]])
    near_branch = np.nextafter(0.625, np.array([-np.inf, np.inf]))
    return np.concatenate([
        _points(rng, -25, 25, 200_001), _points(rng, -1, 1, 100_001), tiny, -tiny,
        np.linspace(0.6, 0.65, 20_001), -np.linspace(0.6, 0.65, 20_001), [0.625, -0.625], near_branch, -near_branch,
        np.linspace(18.5, 19.5, 1001), 10.0 ** rng.uniform(1.5, 308, 1000),
    ])


def _exp_points():
    rng = np.random.default_rng(2)
    tiny = 10.0 ** rng.uniform(-320, -4, 20_000)
    return np.concatenate([
        _points(rng, -745, 709.78, 400_001), _points(rng, -2, 2, 100_001), tiny, -tiny,
        np.linspace(-745.2, -700, 20_001), np.linspace(700, 709.78, 10_001),  # subnormal results; the edge of overflow
        (np.arange(-1074, 1024) * np.log(2)).clip(-745, 709.78),  # where the reduction changes n
    ])


def _within_ulps(loop, x, exact, limit=MAX_ULP):
    """``loop`` applied to ``x``, after checking it against ``exact`` (80-bit) to ``limit`` ulps."""
    got = _apply(loop, x)
    worst = _ulps(got, exact(x.astype(np.longdouble)))
    assert worst.max() <= limit, f"{worst.max():.2f} ulp at x = {x[worst.argmax()]!r}"
    return got


@needs_extended
def test_tanh_is_within_a_few_ulps_everywhere():
    assert np.abs(_within_ulps(_tanh_loop, _tanh_points(), np.tanh)).max() <= 1.0


@needs_extended
def test_exp_is_within_a_few_ulps_down_to_subnormal_results():
    got = _within_ulps(_exp_loop, _exp_points(), np.exp)
    assert (got >= 0).all()  # 0 only where the exact value rounds to it (checked above)


@needs_extended
def test_sigmoid_with_the_vectorised_exp_is_within_a_few_ulps():
    rng = np.random.default_rng(3)
    x = np.concatenate([_points(rng, -700, 700, 100_001), _points(rng, -40, 40, 100_001), [0.0, 1e-300, -1e-300]])
    _within_ulps(_sigmoid_loop, x, lambda xl: 1 / (1 + np.exp(-xl)), MAX_ULP + 1)


def test_they_agree_with_numpy_where_no_long_double_is_needed():
    """The same checks against libm (itself within an ulp): they run on every machine."""
    rng = np.random.default_rng(4)
    x = _points(rng, -30, 30, 50_001)
    np.testing.assert_array_max_ulp(_apply(_tanh_loop, x), np.tanh(x), maxulp=int(MAX_ULP) + 1)
    x = _points(rng, -745, 709, 50_001)
    np.testing.assert_array_max_ulp(_apply(_exp_loop, x), np.exp(x), maxulp=int(MAX_ULP) + 1)


def test_the_ends_of_the_range():
    """Saturation, underflow, overflow and NaN; exactness at 0."""
    x = np.array([np.inf, -np.inf, 1e308, -1e308, 19.5, -19.5, 0.0, -0.0, np.nan])
    np.testing.assert_array_equal(_apply(_tanh_loop, x), [1, -1, 1, -1, 1, -1, 0, 0, np.nan])
    x = np.array([-np.inf, -1e308, -746.0, -745.2, -745.1, 0.0, -0.0, 709.79, 710.0, 1e308, np.inf, np.nan])
    got = _apply(_exp_loop, x)
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 5e-324, 1, 1, np.inf, np.inf, np.inf, np.inf, np.nan])
    x = np.array([-np.inf, -1000.0, 0.0, 1000.0, np.inf, np.nan])
    np.testing.assert_array_equal(_apply(_sigmoid_loop, x), [0, 0, 0.5, 1, 1, np.nan])


def test_the_shifter_constant_is_its_own_bit_pattern():
    assert np.float64(vmath._SHIFTER).view(np.int64) == vmath._SHIFTER_BITS


def _body(dispatcher) -> str:
    """The assembly of the compiled function itself (not Numba's Python wrapper around it)."""
    (asm,) = dispatcher.inspect_asm().values()
    match = re.search(r"\n(_ZN\w+):\n(.*?)\.Lfunc_end", asm, re.S)
    assert match, "no function body found in the assembly"
    return match.group(2)


@pytest.mark.parametrize("loop", [_tanh_loop, _exp_loop, _sigmoid_loop], ids=["tanh", "exp", "sigmoid"])
def test_the_loops_vectorise_and_call_nothing(loop):
    """The point of these functions: no libm call left in the loop, and packed float64 arithmetic
    (``...pd`` on xmm/ymm/zmm registers) where the machine has vectors."""
    _apply(loop, np.linspace(-3, 3, 64))
    body = _body(loop)
    assert not re.search(r"\bcall", body), "a call is left in the loop"
    if re.search(r"x86|amd64|i686", __import__("platform").machine().lower()):
        assert re.search(r"\bvdivpd\s+%[yz]mm|\bdivpd\s+%xmm", body), "the division is not packed: the loop did not vectorise"


def _kernel_loop(name):
    """A fresh loop over ``x`` through the kernels' own entry points (numba_intrinsics), which pick
    the math by dtype while typing."""
    kind = {"tanh": kernels.TANH, "sigmoid": kernels.SIGMOID}.get(name)

    if kind is None:
        def loop(x, out):
            for i in range(x.size):
                out[i] = intrinsics.exp_neg(x[i])
    else:
        def loop(x, out):
            for i in range(x.size):
                out[i] = intrinsics.activate(x[i], kind)
    return njit(**_FLAGS)(loop)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "exp"])
def test_the_kernels_take_their_dtypes_math_inlined_and_vectorised(name, dtype):
    """float64 gets these functions, float32 the rational tanh (no rounding instruction: it has no
    2**n step), each inlined by LLVM: nothing called, the division packed, the values those of
    the function itself (float64) or within its stated error (float32)."""
    x = np.linspace(-30, 0, 4097) if name == "exp" else np.linspace(-9, 9, 4097)
    loop = _kernel_loop(name)
    got = _apply(loop, x.astype(dtype))
    body = _body(loop)
    assert not re.search(r"\bcall", body), "a call is left in the loop"
    has_rounding = re.search(r"\b(v?round|vrndscale)[ps]d\b", body) is not None
    assert has_rounding == (dtype == np.float64), "the other dtype's math was compiled"
    if re.search(r"x86|amd64|i686", __import__("platform").machine().lower()):
        suffix = "pd" if dtype == np.float64 else "ps"
        assert re.search(rf"\bvdiv{suffix}\s+%[yz]mm|\bdiv{suffix}\s+%xmm", body), "the division is not packed: the loop did not vectorise"
    if dtype == np.float64:
        direct = {"tanh": _tanh_loop, "sigmoid": _sigmoid_loop, "exp": _exp_loop}[name]
        np.testing.assert_array_max_ulp(got, _apply(direct, x), maxulp=1)
    else:
        exact = {"tanh": np.tanh, "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "exp": np.exp}[name](x)
        assert got.dtype == np.float32 and np.abs(got - exact).max() < 4e-7
