# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Text rows from columns, compiled: the loop the Zeek, JSON and CSV writers spend their time in.

``join_rows`` interleaves literal text (separators, keys) with the values of columns, row by
row: string columns (Arrow offsets + data, copied) and unsigned integer columns (written in
decimal here, which is several times faster than casting them to strings first).
``sensor/export/textcols.py`` falls back to Arrow's element-wise join when this module is
not built; both give the same bytes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef enum:
    KIND_STRING = 0
    KIND_UINT = 1

#: Column kinds.
STRING = KIND_STRING
UINT = KIND_UINT

cdef inline Py_ssize_t _digits(uint64_t v) nogil:
    cdef Py_ssize_t d = 1
    while v >= 10:
        v //= 10
        d += 1
    return d

cdef inline Py_ssize_t _put_uint(char *dst, uint64_t v) nogil:
    cdef Py_ssize_t d = _digits(v), i
    for i in range(d - 1, -1, -1):
        dst[i] = <char>(48 + v % 10)
        v //= 10
    return d


def join_rows(Py_ssize_t start, Py_ssize_t stop, list literals, list kinds, list firsts,
              list seconds):
    """Rows ``start..stop-1`` as one bytes object: ``literals[0] + value0 + literals[1] + ...
    + valueK + literals[K+1]`` per row. Column ``c`` is a string column (``kinds[c] ==
    STRING``: ``firsts[c]`` int32 offsets, ``seconds[c]`` uint8 data, no nulls) or an
    unsigned integer column (``UINT``: ``firsts[c]`` uint64 values)."""
    cdef Py_ssize_t k = len(kinds), c, i, pos = 0, total = 0, lit_total = 0
    if len(literals) != k + 1 or len(firsts) != k or len(seconds) != k:
        raise ValueError("join_rows: need one more literal than columns")
    cdef const int32_t **off = <const int32_t **>malloc((k + 1) * sizeof(void *))
    cdef const char **dat = <const char **>malloc((k + 1) * sizeof(void *))
    cdef const uint64_t **num = <const uint64_t **>malloc((k + 1) * sizeof(void *))
    cdef int *kind = <int *>malloc((k + 1) * sizeof(int))
    cdef const char **lit = <const char **>malloc((k + 1) * sizeof(void *))
    cdef Py_ssize_t *lit_len = <Py_ssize_t *>malloc((k + 1) * sizeof(Py_ssize_t))
    cdef const int32_t[::1] o
    cdef const uint8_t[::1] d
    cdef const uint64_t[::1] u
    cdef bytes b, out
    cdef char *dst
    cdef Py_ssize_t a, z
    keep = []
    try:
        for c in range(k + 1):
            b = literals[c]
            keep.append(b)
            lit[c] = PyBytes_AS_STRING(b)
            lit_len[c] = len(b)
            lit_total += len(b)
        for c in range(k):
            kind[c] = kinds[c]
            if kind[c] == KIND_STRING:
                o = firsts[c]
                d = seconds[c]
                if o.shape[0] < stop + 1 or o[stop] > d.shape[0] or o[start] < 0:
                    raise ValueError("join_rows: offsets outside the data")
                keep.append((o, d))
                off[c] = &o[0]
                dat[c] = <const char *>&d[0] if d.shape[0] else lit[0]
                total += o[stop] - o[start]
            elif kind[c] == KIND_UINT:
                u = firsts[c]
                if u.shape[0] < stop:
                    raise ValueError("join_rows: short integer column")
                keep.append(u)
                num[c] = &u[0]
                with nogil:
                    for i in range(start, stop):
                        total += _digits(num[c][i])
            else:
                raise ValueError(f"join_rows: unknown column kind {kind[c]}")
        total += lit_total * (stop - start)
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(out)
        with nogil:
            for i in range(start, stop):
                for c in range(k):
                    memcpy(dst + pos, lit[c], lit_len[c])
                    pos += lit_len[c]
                    if kind[c] == KIND_STRING:
                        a = off[c][i]
                        z = off[c][i + 1]
                        memcpy(dst + pos, dat[c] + a, z - a)
                        pos += z - a
                    else:
                        pos += _put_uint(dst + pos, num[c][i])
                memcpy(dst + pos, lit[k], lit_len[k])
                pos += lit_len[k]
        return out
    finally:
        free(off)
        free(dat)
        free(num)
        free(kind)
        free(lit)
        free(lit_len)
