# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Text rows from columns, compiled: the loop the Zeek, JSON and CSV writers spend their time in.

``join_rows`` interleaves literal text (separators, keys) with the values of columns, row by
row: string columns (Arrow offsets + data, copied) and unsigned integer columns (written in
decimal here, which is several times faster than casting them to strings first).
``sensor/export/textcols.py`` falls back to Arrow's element-wise join when this module is
not built; both give the same bytes.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
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


cdef inline void _put_fixed(char *dst, int64_t v, int width) noexcept nogil:
    """``v`` clipped to ``0 .. 10**width - 1``, in ``width`` decimal digits."""
    cdef int64_t top = 1
    cdef int k
    for k in range(width):
        top *= 10
    if v < 0:
        v = 0
    elif v >= top:
        v = top - 1
    for k in range(width - 1, -1, -1):
        dst[k] = <char>(48 + v % 10)
        v //= 10


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


def iso_times(const int64_t[::1] us):
    """Microseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, 27 bytes each, end
    to end: the text ``netwarden.records.render.iso_text`` gives (each part clipped to its
    width, years 0-9999, days by H. Hinnant's ``civil_from_days``)."""
    cdef Py_ssize_t n = us.shape[0], i
    cdef int64_t secs, frac, days, sod, z, era, doe, yoe, doy, mp, day, month, year
    out = PyBytes_FromStringAndSize(NULL, 27 * n)
    cdef char *dst = PyBytes_AS_STRING(out)
    cdef char *r
    with nogil:
        for i in range(n):
            secs = _floordiv(us[i], 1000000)
            frac = us[i] - secs * 1000000
            days = _floordiv(secs, 86400)
            sod = secs - days * 86400
            z = days + 719468
            era = _floordiv(z, 146097)
            doe = z - era * 146097
            yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
            doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
            mp = (5 * doy + 2) // 153
            day = doy - (153 * mp + 2) // 5 + 1
            month = mp + 3 if mp < 10 else mp - 9
            year = yoe + era * 400 + (1 if month <= 2 else 0)
            r = dst + 27 * i
            _put_fixed(r, year, 4)
            r[4] = b'-'
            _put_fixed(r + 5, month, 2)
            r[7] = b'-'
            _put_fixed(r + 8, day, 2)
            r[10] = b'T'
            _put_fixed(r + 11, sod // 3600, 2)
            r[13] = b':'
            _put_fixed(r + 14, sod // 60 % 60, 2)
            r[16] = b':'
            _put_fixed(r + 17, sod % 60, 2)
            r[19] = b'.'
            _put_fixed(r + 20, frac, 6)
            r[26] = b'Z'
    return out
