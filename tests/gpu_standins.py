"""Stand-ins that run the GPU code's host-side logic without a GPU.

- :class:`FakeCupy`: the slice of CuPy that ``CupyBackend.capture`` and the error paths use. It
  runs nothing; it records every launch as a node on its stream, with the stream and event
  edges CUDA orders work by, so a test can ask whether one launch is ordered after another.
- :class:`TapeGraphBackend`: NumPy arithmetic whose ``capture`` records a tape of the step's ops
  and replays it on the very arrays it recorded, as a CUDA graph replays fixed addresses. Like a
  graph, it holds the arrays it did not allocate only weakly, and refuses to replay onto freed ones.
"""

from __future__ import annotations

import contextlib
import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np

from netcore.backends.base import Backend
from netcore.backends.cupy_backend import CupyBackend
from netcore.backends.numpy_backend import NumpyBackend

# -- FakeCupy ----------------------------------------------------------------------------------


class Node:
    """One piece of work queued on a stream, with the work it is ordered after."""

    def __init__(self, label: str, stream: FakeStream, after: list[Node]) -> None:
        self.label, self.stream, self.after = label, stream, after

    def __repr__(self) -> str:
        return f"<{self.label} on {self.stream.name}>"


class FakeEvent:
    def __init__(self, node: Node | None) -> None:
        self.node = node


class FakeGraph:
    def __init__(self, fake: FakeCupy, recorded: list[str]) -> None:
        self.fake, self.recorded = fake, recorded

    def launch(self, stream: FakeStream | None = None) -> None:
        (stream or self.fake.current()).queue("graph replay")


class FakeStream:
    """A CUDA stream: work on it runs in order, after the events it was told to wait for."""

    def __init__(self, fake: FakeCupy, name: str, non_blocking: bool = False) -> None:
        self.fake, self.name, self.non_blocking = fake, name, non_blocking
        self.last: Node | None = None
        self.waits: list[Node] = []
        self.capturing: list[str] | None = None

    def queue(self, label: str) -> Node | None:
        if self.capturing is not None:  # recorded into the graph, not run
            self.capturing.append(label)
            return None
        node = Node(label, self, ([self.last] if self.last else []) + self.waits)
        self.last, self.waits = node, []
        self.fake.log.append(node)
        return node

    def record(self) -> FakeEvent:
        return FakeEvent(self.last)

    def wait_event(self, event: FakeEvent) -> None:
        if event.node is not None:
            self.waits.append(event.node)

    def synchronize(self) -> None:
        pass

    def begin_capture(self) -> None:
        if self is self.fake.null:
            raise RuntimeError("the legacy default stream cannot be captured")
        self.capturing = []

    def end_capture(self) -> FakeGraph:
        graph, self.capturing = FakeGraph(self.fake, self.capturing), None
        return graph

    def __enter__(self) -> FakeStream:
        self.fake.streams.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.fake.streams.pop()


class FakeBlock:
    """Device memory from a pool; goes back to the pool's free list of its stream when dropped."""

    def __init__(self, pool: FakePool, size: int, stream: FakeStream) -> None:
        self.pool, self.size, self.stream = pool, size, stream

    def __del__(self) -> None:
        self.pool.free.setdefault((self.stream, self.size), []).append(None)


class FakePool:
    """A memory pool with free lists per stream and size, as CuPy's; counts fresh allocations."""

    def __init__(self, fake: FakeCupy, name: str) -> None:
        self.fake, self.name = fake, name
        self.free: dict[tuple, list] = {}
        self.fresh = 0
        self.fresh_while_capturing = 0

    def malloc(self, size: int) -> FakeBlock:
        stream = self.fake.current()
        if self.free.get((stream, size)):
            self.free[(stream, size)].pop()
        else:
            self.fresh += 1
            self.fresh_while_capturing += stream.capturing is not None
        return FakeBlock(self, size, stream)


class FakeOutOfMemoryError(MemoryError):
    pass


class FakeCupy:
    """``cupy`` as far as the backend's capture and error paths use it; ``launch`` and ``read``
    stand for a kernel and for a host read (which CuPy does on the current stream)."""

    __version__ = "14.0.0"
    asarray = staticmethod(np.asarray)  # host arrays stand for device arrays

    def __init__(self, driver: int = 13000, free_mib: int = 100, total_mib: int = 141_000) -> None:
        self.log: list[Node] = []
        self.null = FakeStream(self, "legacy default stream")
        self.streams: list[FakeStream] = []
        self.default_pool = FakePool(self, "default pool")
        self.allocators: list = [self.default_pool.malloc]
        self.pools: list[FakePool] = []
        fake = self

        def pool() -> FakePool:
            fake.pools.append(FakePool(fake, f"private pool {len(fake.pools)}"))
            return fake.pools[-1]

        @contextlib.contextmanager
        def using_allocator(fn):
            fake.allocators.append(fn)
            try:
                yield
            finally:
                fake.allocators.pop()

        def runtime_error():
            raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")

        self.cuda = SimpleNamespace(
            Stream=lambda non_blocking=False: FakeStream(fake, f"stream {len(fake.log)}", non_blocking),
            get_current_stream=self.current,
            MemoryPool=pool,
            get_allocator=lambda: fake.allocators[-1],
            using_allocator=using_allocator,
            memory=SimpleNamespace(OutOfMemoryError=FakeOutOfMemoryError),
            runtime=SimpleNamespace(
                memGetInfo=lambda: (free_mib * 2**20, total_mib * 2**20),
                driverGetVersion=lambda: driver,
                runtimeGetVersion=lambda: 13000,
                getDeviceCount=runtime_error,
            ),
        )

    def current(self) -> FakeStream:
        return self.streams[-1] if self.streams else self.null

    def launch(self, label: str) -> Node | None:
        return self.current().queue(label)

    def read(self, label: str = "host read") -> Node:
        return self.current().queue(label)

    def allocate(self, size: int) -> FakeBlock:
        return self.allocators[-1](size)


def ordered_before(a: Node, b: Node) -> bool:
    """Whether CUDA runs ``a`` before ``b`` starts: a path of stream order and event waits."""
    seen, todo = set(), list(b.after)
    while todo:
        node = todo.pop()
        if node is a:
            return True
        if id(node) not in seen:
            seen.add(id(node))
            todo.extend(node.after)
    return False


def cupy_backend_on(fake: FakeCupy, dtype: str = "float32") -> CupyBackend:
    """A CupyBackend whose ``xp`` is the stand-in (its __init__ would import the real CuPy)."""
    ops = CupyBackend.__new__(CupyBackend)
    Backend.__init__(ops, dtype)
    ops.xp, ops._kernels = fake, {}
    return ops


# -- TapeGraphBackend --------------------------------------------------------------------------

# The ops a training step calls (the network's forward/backward and the optimizers' updates).
TAPED_OPS = (
    "matmul", "matmul_nt", "matmul_tn", "add_bias", "linear", "activation", "dense", "activation_backward",
    "softmax", "cross_entropy", "softmax_cross_entropy", "softmax_cross_entropy_delta", "sum_rows",
    "sum_squares", "scale", "sgd_update", "adam_update", "zeros_like", "copy", "take_rows",
)


class FreedMemoryError(RuntimeError):
    """A replay would have run on an array that no longer exists (on a GPU: on freed memory)."""


class TapeGraphBackend(NumpyBackend):
    """NumPy arithmetic with a CPU model of CUDA graph capture (see the module docstring); its
    ``capture_limits`` are the cupy backend's."""

    name = "tape-graph"
    capture_limits = CupyBackend.capture_limits

    def __init__(self, dtype: Any = "float64") -> None:
        super().__init__(dtype)
        self._tape: list | None = None
        self._depth = 0
        self._produced: dict[int, Any] = {}  # id -> array, of what the tape's ops produced
        self._snapshots: dict[int, tuple] = {}
        self.recordings: list[tuple[weakref.ref, list[weakref.ref]]] = []

    def _note(self, name: str, args: tuple) -> None:
        """Tape one op: arrays the tape made are held; the others weakly, after a snapshot that
        undoes the recording run's writes to them (a capture runs nothing)."""
        held = []
        for a in args:
            if isinstance(a, np.ndarray) and id(a) not in self._produced:
                self._snapshots.setdefault(id(a), (a, a.copy()))
                held.append(weakref.ref(a))
            else:
                held.append(a)
        self._tape.append([name, held, None])

    def capture(self, step):
        first = step()
        self._tape, self._produced, self._snapshots = [], {}, {}
        try:
            recorded = step()
        finally:
            tape, self._tape = self._tape, None
            for a, before in self._snapshots.values():
                np.copyto(a, before)
            self._snapshots = {}
        outside = [arg for _, args, _ in tape for arg in args if isinstance(arg, weakref.ref)]

        def replay():
            for name, args, out in tape:
                resolved = [a() if isinstance(a, weakref.ref) else a for a in args]
                if any(r is None for r, a in zip(resolved, args) if isinstance(a, weakref.ref)):
                    raise FreedMemoryError(f"replayed {name} onto an array that was freed after the recording")
                result = _plain(self, name, resolved)
                for buffer, value in zip(out if isinstance(out, tuple) else (out,), result if isinstance(out, tuple) else (result,)):
                    if isinstance(buffer, np.ndarray) and value is not buffer:
                        np.copyto(buffer, value)
            return recorded

        self.recordings.append((weakref.ref(replay), outside))
        return first, replay

    def dangling(self) -> list[str]:
        """Replays still alive that would run on an array already freed."""
        return [f"recording {i}" for i, (replay, arrays) in enumerate(self.recordings) if replay() is not None and any(a() is None for a in arrays)]


def _plain(ops: TapeGraphBackend, name: str, args) -> Any:
    """The NumPy op; the loss comes back as a 0-d array, a buffer a replay overwrites as on a GPU."""
    out = getattr(NumpyBackend, name)(ops, *args)
    return (np.asarray(out[0]), out[1]) if name == "softmax_cross_entropy" else out


def _taped(name: str):
    def op(self: TapeGraphBackend, *args: Any) -> Any:
        if self._tape is None or self._depth:
            return _plain(self, name, args)
        self._note(name, args)
        self._depth += 1
        try:
            out = _plain(self, name, args)
        finally:
            self._depth -= 1
        self._tape[-1][2] = out
        for a in out if isinstance(out, tuple) else (out,):
            if isinstance(a, np.ndarray) and id(a) not in self._snapshots:  # not an array updated in place
                self._produced[id(a)] = a
        return out

    op.__name__ = name
    return op


for _name in TAPED_OPS:
    setattr(TapeGraphBackend, _name, _taped(_name))
