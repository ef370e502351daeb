"""Arrow arrays over numpy buffers, and numpy views of Arrow columns, for the record
converters and writers.

``pa.array``, ``pa.scalar`` and ``to_numpy`` import pandas the first time they run when
pandas is installed: a fifth of a second at every start of ``netwarden flows``, for
conversions that are views of a buffer. These build the same arrays from buffers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = [
    "fixed_bytes", "int64_values", "numpy_array", "numpy_values", "string_array", "text_scalar",
]  # fmt: skip


def numpy_array(values: np.ndarray) -> pa.Array:
    """A numeric or boolean numpy array as an Arrow array (no nulls), over its buffer."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    dtype = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(dtype, len(values), [None, pa.py_buffer(values)])


_NUMPY_OF = {
    **{f"{s}int{b}": np.dtype(f"{s}int{b}") for s in ("", "u") for b in (8, 16, 32, 64)},
    "halffloat": np.dtype(np.float16), "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
}  # fmt: skip


def numpy_values(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column without nulls as numpy values (timestamps as int64), over its
    buffer."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_timestamp(arr.type) or pa.types.is_duration(arr.type):
        arr = arr.cast(pa.int64())
    if pa.types.is_boolean(arr.type):
        bits = np.frombuffer(arr.buffers()[1], np.uint8)
        return np.unpackbits(bits, bitorder="little")[arr.offset : arr.offset + len(arr)].view(
            np.bool_
        )
    name = str(arr.type)
    if name not in _NUMPY_OF:
        raise TypeError(f"not a numeric column: {arr.type}")
    dtype = _NUMPY_OF[name]
    if not len(arr):
        return np.zeros(0, dtype)
    return np.frombuffer(
        arr.buffers()[1], dtype, count=len(arr), offset=dtype.itemsize * arr.offset
    )


def int64_values(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer or timestamp column without nulls as int64 numpy values."""
    return numpy_values(col).astype(np.int64, copy=False)


def string_array(values: Sequence[str | None]) -> pa.Array:
    """Python strings (``None`` -> null) as an Arrow string array, from buffers."""
    data = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    valid = None
    if any(v is None for v in values):
        valid = numpy_array(np.array([v is not None for v in values])).buffers()[1]
    return pa.Array.from_buffers(
        pa.string(), len(data), [valid, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    )


@functools.cache
def text_scalar(text: str) -> pa.Scalar:
    """A string scalar (``pa.scalar`` would import pandas)."""
    return string_array([text])[0]


def fixed_bytes(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """NUL-padded fixed-width bytes (``S<n>``) as an Arrow binary array, each value up to its
    first NUL (as ``pa.array`` reads ``S<n>``), ``mask`` rows null. Built from buffers: ``pa.array`` on
    ``S<n>`` would import pandas, a fifth of a second at every start."""
    n, width = len(values), values.dtype.itemsize
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(n, width)
    nul = raw == 0
    lens = np.where(nul.any(axis=1), np.argmax(nul, axis=1), width)
    if mask is not None:
        lens = np.where(mask, 0, lens)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    if n and int(lens.min()) == width:
        data = raw.reshape(-1)
    else:
        data = raw[np.arange(width) < lens[:, None]]
    bits = None if mask is None else numpy_array(~np.asarray(mask, bool)).buffers()[1]
    return pa.Array.from_buffers(
        pa.binary(), n, [bits, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )
