# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Text rows from text columns, compiled: one pass, one ``memcpy`` per field.

``join_rows`` is what the Zeek, JSON and CSV writers spend their time on: it interleaves
the values of Arrow string columns with literal text (separators, keys) row by row.
``sensor/export/textcols.py`` falls back to Arrow's element-wise join when this module is
not built; both give the same bytes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np


def join_rows(Py_ssize_t n, list literals, list offsets, list datas):
    """``literals[0] + col0[i] + literals[1] + ... + colK[i] + literals[K+1]`` for every row
    ``i``, as one bytes object. ``offsets[c]`` (int32, n + 1 values) and ``datas[c]`` (uint8)
    are the buffers of string column ``c`` without nulls."""
    cdef Py_ssize_t k = len(offsets), c, i, pos = 0, total = 0, lit_total = 0
    if len(literals) != k + 1 or len(datas) != k:
        raise ValueError("join_rows: need one more literal than columns")
    cdef const int32_t **off = <const int32_t **>malloc(max(k, 1) * sizeof(void *))
    cdef const char **dat = <const char **>malloc(max(k, 1) * sizeof(void *))
    cdef const char **lit = <const char **>malloc((k + 1) * sizeof(void *))
    cdef Py_ssize_t *lit_len = <Py_ssize_t *>malloc((k + 1) * sizeof(Py_ssize_t))
    cdef const int32_t[::1] o
    cdef const uint8_t[::1] d
    cdef bytes b, out
    cdef char *dst
    keep = []
    try:
        for c in range(k + 1):
            b = literals[c]
            lit[c] = PyBytes_AS_STRING(b)
            lit_len[c] = len(b)
            lit_total += len(b)
        for c in range(k):
            o = offsets[c]
            d = datas[c]
            if o.shape[0] < n + 1:
                raise ValueError("join_rows: short offsets")
            if o[n] > d.shape[0] or o[0] < 0:
                raise ValueError("join_rows: offsets outside the data")
            keep.append((o, d))
            off[c] = &o[0]
            dat[c] = <const char *>&d[0] if d.shape[0] else <const char *>lit[0]
            total += o[n] - o[0]
        total += lit_total * n
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(out)
        with nogil:
            for i in range(n):
                for c in range(k):
                    memcpy(dst + pos, lit[c], lit_len[c])
                    pos += lit_len[c]
                    memcpy(dst + pos, dat[c] + off[c][i], off[c][i + 1] - off[c][i])
                    pos += off[c][i + 1] - off[c][i]
                memcpy(dst + pos, lit[k], lit_len[k])
                pos += lit_len[k]
        return out
    finally:
        free(off)
        free(dat)
        free(lit)
        free(lit_len)
