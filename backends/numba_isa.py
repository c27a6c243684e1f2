"""Which vector instructions the fused kernels are compiled for, and the tile shapes that fit them.

Numba compiles for the CPU LLVM names (``llvmlite.binding.get_host_cpu_name()``, or
``NUMBA_CPU_NAME``) with that CPU's features (or ``NUMBA_CPU_FEATURES``). :func:`target_isa`
asks LLVM itself what those two allow: 64-byte vectors and 32 vector registers (AVX-512),
32-byte vectors and 16 registers (AVX2 with FMA), or a plain 16-byte fallback for anything else
(SSE, NEON). The answer travels into the kernels as a Numba type (:class:`IsaType`), so each
instruction set is a compile-time specialisation with its own entry in the on-disk cache, and
the tests can run every variant on one machine: LLVM splits vectors wider than the machine's.

Two register tiles, each sized so its accumulators, its operands and one spare fit the register
file (BLIS and OpenBLAS size their micro-kernels the same way):

- ``rank1``: ``C[MR, NR vectors] += A[MR, k] * B[k, NR vectors]``, one broadcast of ``A`` per row
  and step, no horizontal sums (the weight gradients along the inputs, the small layers along
  the samples);
- ``dot``: ``C[MR, NR] = A[MR, :] . B[NR, :]``, vector accumulators along the reduction, summed
  across lanes once at the end (the first layer's forward, whose weights are read in place).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from numba import types
from numba.core import config
from numba.extending import NativeValue, models, register_model, typeof_impl, unbox


@dataclass(frozen=True)
class Isa:
    """A vector instruction set as the kernels see it."""

    name: str
    vector_bytes: int
    registers: int

    def lanes(self, itemsize: int) -> int:
        return max(1, self.vector_bytes // itemsize)

    @property
    def rank1_tile(self) -> tuple[int, int]:
        """(rows, vectors) of the rank-1 tile: rows x vectors accumulators, the vectors of B and one
        broadcast: 8 x 3 (28 of 32 registers), 6 x 2 (15 of 16)."""
        return (8, 3) if self.registers >= 32 else (6, 2)

    @property
    def tall_rows(self) -> int:
        """Rows of the rank-1 tile one vector wide (a product of that width, 16 float32
        neurons on AVX-512): 24 x 1 (26 of 32 registers), 12 x 1 (14 of 16)."""
        return 24 if self.registers >= 32 else 12

    @property
    def dot_tile(self) -> tuple[int, int]:
        """(rows of A, rows of B) of the dot tile: the accumulators, A's vectors and one of B's:
        6 x 4 (31 of 32 registers), 3 x 4 (16 of 16)."""
        return (6, 4) if self.registers >= 32 else (3, 4)


AVX512 = Isa("avx512", 64, 32)
AVX2 = Isa("avx2", 32, 16)
PLAIN = Isa("plain", 16, 16)
VARIANTS = (AVX512, AVX2, PLAIN)


class IsaType(types.Type):
    """The Numba type of an :class:`Isa`: the kernels read vector width and tile shapes from it
    at compile time (it carries no runtime value)."""

    def __init__(self, isa: Isa) -> None:
        self.isa = isa
        super().__init__(name=f"Isa({isa.name}, {isa.vector_bytes} B, {isa.registers} registers)")


@typeof_impl.register(Isa)
def _typeof_isa(val, c):
    return IsaType(val)


register_model(IsaType)(models.OpaqueModel)


@unbox(IsaType)
def _unbox_isa(typ, obj, c):
    return NativeValue(c.context.get_dummy_value())


def target() -> tuple[str, str]:
    """(CPU name, feature string) that Numba compiles for: its settings, else the host's."""
    import llvmlite.binding as ll
    from numba.core.codegen import get_host_cpu_features

    name = config.CPU_NAME or ll.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return name, features


@functools.cache
def target_isa() -> Isa:
    """The variant for Numba's target (:func:`target`); fixed for the life of the process, as
    Numba's own target is."""
    return isa_for(*target())


@functools.cache
def isa_for(cpu: str, features: str) -> Isa:
    """The widest variant LLVM emits for this CPU name and feature string: asked of LLVM, by
    compiling a fused multiply-add of 16 floats, so a CPU name alone cannot mislead it
    (``NUMBA_CPU_NAME=haswell`` with the host's AVX-512 features still on is AVX-512 code)."""
    import llvmlite.binding as ll

    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    module = ll.parse_assembly(
        """
        declare <16 x float> @llvm.fma.v16f32(<16 x float>, <16 x float>, <16 x float>)
        define void @probe(ptr %p) {
          %v = load <16 x float>, ptr %p, align 64
          %f = call <16 x float> @llvm.fma.v16f32(<16 x float> %v, <16 x float> %v, <16 x float> %v)
          store <16 x float> %f, ptr %p, align 64
          ret void
        }
        """
    )
    machine = ll.Target.from_triple(ll.get_process_triple()).create_target_machine(cpu=cpu, features=features, opt=2)
    asm = machine.emit_assembly(module)
    if "zmm" in asm:
        return AVX512
    if "ymm" in asm and "vfmadd" in asm:
        return AVX2
    return PLAIN
