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


def uint_lists(const int32_t[::1] offsets, const uint64_t[::1] values):
    """Lists of unsigned integers as ``[a,b,c]`` text: (int32 offsets, bytes) of a string
    array with one value per list; list ``i`` holds ``values[offsets[i]:offsets[i + 1]]``."""
    cdef Py_ssize_t n = offsets.shape[0] - 1, i, j, pos = 0, total = 0
    if n < 0:
        raise ValueError("offsets must hold at least one entry")
    if offsets[0] < 0 or offsets[n] > values.shape[0]:
        raise ValueError("offsets outside the values")
    for i in range(n):
        if offsets[i + 1] < offsets[i]:
            raise ValueError("offsets must not decrease")
    out_off = bytearray(4 * (n + 1))
    cdef int32_t *oo = <int32_t *><char *>out_off
    with nogil:
        for i in range(n):
            total += 2 + (offsets[i + 1] - offsets[i] - 1 if offsets[i + 1] > offsets[i] else 0)
            for j in range(offsets[i], offsets[i + 1]):
                total += _digits(values[j])
    if total > 0x7FFFFFFF:
        raise OverflowError("list text over 2 GiB")
    data = PyBytes_FromStringAndSize(NULL, total)
    cdef char *dst = PyBytes_AS_STRING(data)
    with nogil:
        for i in range(n):
            oo[i] = <int32_t>pos
            dst[pos] = b'['
            pos += 1
            for j in range(offsets[i], offsets[i + 1]):
                if j > offsets[i]:
                    dst[pos] = b','
                    pos += 1
                pos += _put_uint(dst + pos, values[j])
            dst[pos] = b']'
            pos += 1
        oo[n] = <int32_t>pos
    return out_off, data
