"""Arrow arrays over numpy buffers, and numpy views of Arrow columns, for the record
converters and writers.

``pa.array``, ``pa.scalar`` and ``to_numpy`` import pandas the first time they run when
pandas is installed: a fifth of a second at every start of ``netwarden flows``, for
conversions that are views of a buffer. These build the same arrays from buffers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "bitmap", "fixed_bytes", "int64_values", "numpy_array", "numpy_values", "string_array",
    "table_from_rows", "text_from_buffers", "text_scalar",
]  # fmt: skip


def bitmap(flags: Any) -> pa.Buffer:
    """Booleans (numpy or Python) as an Arrow bitmap buffer (validity or boolean values)."""
    return pa.py_buffer(np.packbits(np.asarray(flags, bool), bitorder="little"))


def numpy_array(values: np.ndarray) -> pa.Array:
    """A numeric or boolean numpy array as an Arrow array (no nulls), over its buffer."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, bitmap(values)])
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
    return text_from_buffers(len(data), offsets, b"".join(data), _validity(values))


def text_from_buffers(n: int, offsets: Any, data: Any, valid: pa.Buffer | None = None) -> pa.Array:
    """``n`` strings over a buffer of ``n + 1`` int32 ``offsets`` into UTF-8 ``data``."""
    return pa.Array.from_buffers(pa.string(), n, [valid, pa.py_buffer(offsets), pa.py_buffer(data)])


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
    bits = None if mask is None else bitmap(~np.asarray(mask, bool))
    return pa.Array.from_buffers(
        pa.binary(), n, [bits, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    )


def _validity(values: Sequence[Any]) -> pa.Buffer | None:
    """The validity bitmap of values where ``None`` is null (None when there is none)."""
    if all(v is not None for v in values):
        return None
    return bitmap([v is not None for v in values])


def python_column(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    """Python values (``None`` -> null) of one column as an Arrow array of ``typ``: strings,
    lists of strings, integers, floats, booleans and timestamps (given as integers in the
    type's unit), built from buffers (``pa.array`` of Python objects would import pandas)."""
    n = len(values)
    if pa.types.is_string(typ):
        return string_array([None if v is None else str(v) for v in values])
    if pa.types.is_list(typ) and pa.types.is_string(typ.value_type):
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum([len(v) if v is not None else 0 for v in values], out=offsets[1:])
        flat = string_array([str(x) for v in values if v is not None for x in v])
        return pa.Array.from_buffers(
            typ, n, [_validity(values), pa.py_buffer(offsets)], children=[flat]
        )
    if pa.types.is_boolean(typ):
        return pa.Array.from_buffers(typ, n, [_validity(values), bitmap([bool(v) for v in values])])
    if pa.types.is_timestamp(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ):
        np_type = np.dtype(np.int64) if pa.types.is_timestamp(typ) else _NUMPY_OF[str(typ)]
        data = np.array([0 if v is None else v for v in values], dtype=np_type)
        return pa.Array.from_buffers(typ, n, [_validity(values), pa.py_buffer(data)])
    raise TypeError(f"no Python conversion for Arrow type {typ}")


def table_from_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts; missing keys are null) as a table of ``schema``: what
    ``pa.Table.from_pylist`` gives for these types, without importing pandas."""
    cols = [python_column([r.get(f.name) for r in rows], f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)
