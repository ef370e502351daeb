"""Column-wise text building shared by the text writers: columns joined row by row (no
Python loop per row) and handed to the file in chunks of a few MB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netwarden.records.arrowbuf import (
    int64_values,
    numpy_array,
    numpy_values,
    string_array,
    text_from_buffers,
    text_scalar,
)
from netwarden.records.render import iso_text


def string_bytes(arr: pa.Array | pa.ChunkedArray) -> pa.Buffer:
    """The concatenated values of a string array without nulls, as one buffer (no copy)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    data = arr.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[n] - offsets[0]))


#: A piece of every row: literal text, a string column without nulls, or unsigned integers.
Piece: TypeAlias = str | pa.Array | np.ndarray
#: Rows per chunk handed to the file: a few MB, so no huge buffer is built (and faulted in).
CHUNK_ROWS = 8192


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int32 offsets, uint8 data) of a string array without nulls."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    data = arr.buffers()[2]
    return offsets, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)


def uints(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An unsigned integer column (no nulls) as a ``join_rows`` piece."""
    return np.ascontiguousarray(numpy_values(col), dtype=np.uint64)


def _compiled() -> Any:
    """``sensor.export._rows`` when built, else None (looked up at each call, so a test can
    hide it)."""
    try:
        from sensor.export import _rows  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _rows


def join_rows(pieces: list[Piece], n: int) -> Iterator[bytes | pa.Buffer]:
    """Row ``i`` of every piece concatenated, for every row, in chunks of bytes. Compiled
    (``_rows``) when built, else Arrow's element-wise join (the same bytes)."""
    literals: list[str] = [""]
    columns: list[pa.Array | np.ndarray] = []
    for piece in pieces:
        if isinstance(piece, str):
            literals[-1] += piece
        else:
            columns.append(piece.combine_chunks() if isinstance(piece, pa.ChunkedArray) else piece)
            literals.append("")
    _rows = _compiled()
    if _rows is None:
        yield string_bytes(_arrow_join(literals, columns, n))
        return
    kinds: list[int] = []
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray | None] = []
    for col in columns:
        if isinstance(col, np.ndarray):
            kinds.append(_rows.UINT)
            firsts.append(col)
            seconds.append(None)
        else:
            offsets, data = _buffers(col)
            kinds.append(_rows.STRING)
            firsts.append(offsets)
            seconds.append(data)
    raw = [lit.encode() for lit in literals]
    for lo in range(0, n, CHUNK_ROWS):
        yield _rows.join_rows(lo, min(n, lo + CHUNK_ROWS), raw, kinds, firsts, seconds)


def _arrow_join(literals: list[str], columns: list[pa.Array | np.ndarray], n: int) -> pa.Array:
    parts: list[pa.Array | pa.Scalar] = []
    for lit, col in zip(literals, [*columns, None], strict=True):
        if lit:
            parts.append(text_scalar(lit))
        if isinstance(col, np.ndarray):
            parts.append(numpy_array(col).cast(pa.string()))
        elif col is not None:
            parts.append(col)
    if not any(isinstance(p, pa.Array) for p in parts):
        parts.insert(0, string_array([""] * n))
    return pc.binary_join_element_wise(*parts, text_scalar(""))


@dataclass(frozen=True)
class TextStyle:
    """How a text format writes values: ``null`` for a missing value (and a non-finite
    float); strings in double quotes, those holding a byte of ``needs_escape`` through
    ``quote``."""

    null: str
    needs_escape: bytes
    quote: Callable[[str], str]


def holds_any(col: pa.Array, chars: bytes) -> bool:
    """Whether any value of a string column holds one of the bytes ``chars``: one pass of
    ``bytes.translate`` over its data (no regular expression, no object per value)."""
    data = string_bytes(col).to_pybytes()
    return len(data.translate(None, chars)) != len(data)


#: Below these, a whole float's shortest text (Arrow's cast) is its integer's digits.
_PLAIN_BELOW = {"double": 1e10, "float": 1e7}


def whole_floats(col: pa.Array) -> np.ndarray | None:
    """A float column whose values are all whole, non-negative and small enough to print
    without an exponent, as unsigned integers (joined in C: the same text as Arrow's cast,
    at a fraction of its cost); None for any other column."""
    bound = _PLAIN_BELOW.get(str(col.type))
    if bound is None or col.null_count or not len(col):
        return None
    v = numpy_values(col)
    if not ((v >= 0) & (v < bound) & (v == np.floor(v))).all() or np.signbit(v).any():
        return None
    return v.astype(np.uint64)


def value_pieces(col: pa.Array, style: TextStyle) -> list[Piece]:
    """Each value of a column as text of ``style``, as ``join_rows`` pieces."""
    t = col.type
    if pa.types.is_unsigned_integer(t) and not col.null_count:
        return [uints(col)]
    if (whole := whole_floats(col)) is not None:
        return [whole]
    null = text_scalar(style.null)
    if pa.types.is_string(t):
        if holds_any(col, style.needs_escape):
            quoted = [style.null if v is None else style.quote(v) for v in col.to_pylist()]
            return [string_array(quoted)]
        if not col.null_count:
            return ['"', col, '"']
        quote, empty = text_scalar('"'), text_scalar("")
        return [pc.fill_null(pc.binary_join_element_wise(quote, col, quote, empty), null)]
    text = pc.cast(col, pa.string())
    if pa.types.is_floating(t) and not pc.all(pc.is_finite(col)).as_py():
        text = pc.if_else(pc.is_finite(col), text, null)
    return [pc.fill_null(text, null) if col.null_count else text]


def list_text(col: pa.Array) -> pa.Array:
    """A list column as ``[a,b,c]`` text (lists of unsigned integers written in C)."""
    _rows = _compiled()
    if (
        _rows is not None
        and isinstance(col, pa.ListArray)
        and pa.types.is_unsigned_integer(col.type.value_type)
        and not col.null_count
        and not col.values.null_count
    ):
        offsets = np.ascontiguousarray(numpy_values(col.offsets), np.int32)
        values = numpy_values(col.values).astype(np.uint64)
        out_off, data = _rows.uint_lists(offsets, values)
        return text_from_buffers(len(col), out_off, data)
    inner = pc.binary_join(col.cast(pa.list_(pa.string())), text_scalar(","))
    return pc.binary_join_element_wise(text_scalar("["), inner, text_scalar("]"), text_scalar(""))


def time_text(col: pa.Array) -> pa.Array:
    """A ``timestamp[us, UTC]`` column as ISO 8601 text (``...T12:00:00.123456Z``)."""
    us = int64_values(col)
    _rows = _compiled()
    if _rows is None:
        return iso_text(us)
    offsets = np.arange(0, 27 * (len(us) + 1), 27, dtype=np.int32)
    return text_from_buffers(len(us), offsets, _rows.iso_times(us))


def for_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The columns of a batch a text format carries: the binary address twins dropped (the
    text twin stays), times as ISO 8601 text, list columns as ``[a,b,c]`` text."""
    names, cols = [], []
    for field, col in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_fixed_size_binary(field.type):
            continue
        names.append(field.name)
        if pa.types.is_list(field.type):
            col = list_text(col)
        elif pa.types.is_timestamp(field.type):
            col = time_text(col)
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=names)


def empty_flows() -> pa.RecordBatch:
    """A flow batch with no rows (what a writer closed before any flow writes)."""
    from netwarden.records.arrow import to_batch
    from netwarden.records.schema import FLOW_DTYPE

    return to_batch("flow", np.zeros(0, FLOW_DTYPE))
