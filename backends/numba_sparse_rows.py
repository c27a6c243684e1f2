"""The compressed form of a mostly-zero input matrix: each sample's nonzero values and columns.

:class:`SparseRows` is what the ``numba`` backend's sparse first layer reads (compressed sparse
rows, CSR): ``values[indptr[i]:indptr[i+1]]`` are sample i's nonzero inputs and ``indices``
the same slice their columns. uint8 images keep their uint8 values (a quarter of float32's
bytes; the kernels scale by 1/255), and columns are uint16 where the width allows, so MNIST's
60,000 images (47 MB as uint8, 19% nonzero) take 28 MB. A mini-batch is a set of row numbers
into it: nothing is copied. A SciPy CSR matrix is taken as it is (its arrays, not a copy;
only ``indptr`` is widened to int64, and values converted where their dtype is another float's).

Built once per fit, in two parallel passes over X (count each row's nonzeros, then copy them;
:mod:`netcore.backends.numba_sparse_compress`): nothing of X's size is allocated on the way. This module
imports only NumPy, so the backend can recognise the form without loading Numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SparseRows:
    """Rows of an ``(n, d)`` input matrix, compressed to their nonzero entries.

    ``values`` (uint8, read as intensities 0..255 like dense uint8 input, or the compute float
    dtype), ``indices`` (uint16 or int32 column numbers), ``indptr`` (int64, n + 1 offsets).
    ``reason`` says why the backend compressed it (printed by ``netcore train``).
    """

    def __init__(self, values: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_features: int, reason: str = "") -> None:
        self.values, self.indices, self.indptr = values, indices, indptr
        self.shape = (len(indptr) - 1, int(n_features))
        self.reason = reason

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<SparseRows {self.shape[0]}x{self.shape[1]} {self.values.dtype.name}, {self.density:.1%} nonzero, {self.nbytes / 1e6:.1f} MB>"

    @property
    def dtype(self) -> np.dtype:
        """The values' dtype: uint8 means 0..255 intensities, scaled by 1/255 like dense uint8."""
        return self.values.dtype

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def density(self) -> float:
        """The fraction of entries that are nonzero."""
        return self.nnz / max(1, self.shape[0] * self.shape[1])

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.indices.nbytes + self.indptr.nbytes

    @classmethod
    def from_dense(cls, X: np.ndarray, counts: np.ndarray | None = None, reason: str = "") -> SparseRows:
        """Compress a C-contiguous 2-D array (its nonzero counts per row, if already known)."""
        from . import numba_sparse_compress as compress

        n, d = X.shape
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(compress.count_rows(X) if counts is None else counts, out=indptr[1:])
        values = np.empty(int(indptr[-1]), X.dtype)
        indices = np.empty(int(indptr[-1]), column_dtype(d))
        compress.fill(X, indptr, values, indices)
        return cls(values, indices, indptr, d, reason)

    @classmethod
    def from_csr(cls, X: Any, dtype: np.dtype, reason: str = "") -> SparseRows:
        """A SciPy CSR matrix (or array), taken as it is: sorted or not, duplicates summed by the
        products as SciPy's own would. Values of another float dtype are converted (a copy of
        ``data`` only); integer values other than uint8 are converted to ``dtype``."""
        values = X.data if X.data.dtype in (np.uint8, dtype) else X.data.astype(dtype)
        indices = X.indices if X.indices.dtype in (np.uint16, np.int32) else X.indices.astype(np.int32)
        return cls(values, indices, X.indptr.astype(np.int64), X.shape[1], reason)

    def to_csr(self, dtype: Any) -> Any:
        """The matrix as a SciPy CSR matrix in the compute ``dtype`` (uint8 scaled to 0..1), for
        what the sparse pass does not cover (other outputs, sample weights, the identity
        activation): built on the first call, then kept."""
        cached = getattr(self, "_csr", None)
        if cached is None or cached.dtype != dtype:
            import scipy.sparse

            values = self.values.astype(dtype)
            if self.values.dtype == np.uint8:
                values *= np.dtype(dtype).type(1 / 255)
            cached = self._csr = scipy.sparse.csr_matrix((values, self.indices.astype(np.int32), self.indptr), shape=self.shape)
        return cached

    def to_dense(self, dtype: Any = None) -> np.ndarray:
        """The matrix as a dense array (of the values' dtype unless given): for tests and checks."""
        out = np.zeros(self.shape, dtype or self.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        np.add.at(out, (rows, self.indices), self.values)
        return out


def column_dtype(d: int) -> np.dtype:
    """The narrowest column type the kernels read: uint16 up to 65,536 features, else int32."""
    return np.dtype(np.uint16 if d <= 1 << 16 else np.int32)


def is_csr(X: Any) -> bool:
    """Whether ``X`` is a SciPy CSR matrix or array (without importing SciPy)."""
    return getattr(X, "format", None) == "csr" and hasattr(X, "indptr")
