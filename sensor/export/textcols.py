"""Column-wise text building shared by the text writers: Arrow string arrays joined
element-wise (no Python loop per row) and their bytes handed to the file in one write."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int32 offsets, uint8 data) of a string array without nulls."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    data = arr.buffers()[2]
    return offsets, np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)


def join_rows(pieces: list[str | pa.Array], n: int) -> bytes | pa.Buffer:
    """Row ``i`` of every piece concatenated, for every row: a piece is literal text (the
    same in every row) or a string column without nulls. Compiled (``_rows``) when built."""
    literals, columns = [""], []
    for piece in pieces:
        if isinstance(piece, str):
            literals[-1] += piece
        else:
            columns.append(piece.combine_chunks() if isinstance(piece, pa.ChunkedArray) else piece)
            literals.append("")
    try:
        from sensor.export._rows import join_rows as compiled
    except ImportError:
        return string_bytes(_arrow_join(literals, columns, n))
    bufs = [_buffers(c) for c in columns]
    return compiled(n, [s.encode() for s in literals], [o for o, _ in bufs], [d for _, d in bufs])


def _arrow_join(literals: list[str], columns: list[pa.Array], n: int) -> pa.Array:
    parts: list[pa.Array | str] = []
    for lit, col in zip(literals, [*columns, None], strict=True):
        if lit:
            parts.append(lit)
        if col is not None:
            parts.append(col)
    if not any(isinstance(p, pa.Array) for p in parts):
        parts.insert(0, pa.array([""] * n))
    return pc.binary_join_element_wise(*parts, "")


def list_text(col: pa.Array) -> pa.Array:
    """A list column as ``[a,b,c]`` text."""
    inner = pc.binary_join(col.cast(pa.list_(pa.string())), ",")
    return pc.binary_join_element_wise("[", inner, "]", "")


def time_text(col: pa.Array) -> pa.Array:
    """A ``timestamp[us, UTC]`` column as ISO 8601 text (``...T12:00:00.123456Z``)."""
    return iso_text(col.cast(pa.int64()).to_numpy(zero_copy_only=False))


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
