# Flow table: open addressing (linear probing, backward-shift deletion) over a pool of C
# flow structs. The pool grows by doubling up to max_flows; slots hold pool index + 1, so
# a realloc of the pool never invalidates the table. No Python object per flow.

# Structs of this file: _fastpath.pxd (table of contents).

cdef enum:
    FT_MIN_POOL = 1024


cdef inline uint64_t fk_hash(const fkey* k) noexcept nogil:
    # FNV-1a over the key words, then a final avalanche (splitmix64's finaliser).
    cdef const uint64_t* w = <const uint64_t*>k
    cdef uint64_t h = 0xCBF29CE484222325ULL
    cdef size_t i
    for i in range(sizeof(fkey) // 8):
        h = (h ^ w[i]) * 0x100000001B3ULL
    h ^= h >> 30
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 27
    h *= 0x94D049BB133111EBULL
    h ^= h >> 31
    return h


cdef int ft_init(ftable* t, uint32_t max_flows) noexcept nogil:
    cdef uint32_t cap = FT_MIN_POOL if max_flows > FT_MIN_POOL else max_flows
    memset(t, 0, sizeof(ftable))
    t.max_flows = max_flows
    t.pool = <flow_t*>calloc(cap, sizeof(flow_t))
    t.nslots = 1
    while t.nslots < 2 * <uint64_t>cap:
        t.nslots <<= 1
    t.slots = <uint32_t*>calloc(t.nslots, sizeof(uint32_t))
    if t.pool == NULL or t.slots == NULL:
        return -1
    t.cap = cap
    return 0


cdef void ft_free(ftable* t) noexcept nogil:
    free(t.pool)
    free(t.slots)
    t.pool = NULL
    t.slots = NULL


cdef int ft_grow(ftable* t) noexcept nogil:
    """Double the pool (bounded by max_flows) and rehash the slots."""
    cdef uint32_t ncap = t.cap * 2
    cdef flow_t* np_
    cdef uint32_t* ns
    cdef uint64_t nslots = t.nslots, j
    cdef uint32_t i
    if ncap > t.max_flows:
        ncap = t.max_flows
    if ncap <= t.cap:
        return -1
    np_ = <flow_t*>realloc(t.pool, <size_t>ncap * sizeof(flow_t))
    if np_ == NULL:
        return -1
    t.pool = np_
    memset(&t.pool[t.cap], 0, <size_t>(ncap - t.cap) * sizeof(flow_t))
    while nslots < 2 * <uint64_t>ncap:
        nslots <<= 1
    if nslots != t.nslots:
        ns = <uint32_t*>calloc(nslots, sizeof(uint32_t))
        if ns == NULL:
            return -1
        for i in range(t.high):
            if t.pool[i].in_use:
                j = t.pool[i].hash & (nslots - 1)
                while ns[j]:
                    j = (j + 1) & (nslots - 1)
                ns[j] = i + 1
        free(t.slots)
        t.slots = ns
        t.nslots = nslots
    t.cap = ncap
    return 0


cdef int64_t ft_find(ftable* t, const fkey* k, uint64_t h) noexcept nogil:
    cdef uint64_t j = h & (t.nslots - 1)
    cdef uint32_t s
    cdef flow_t* f
    while True:
        s = t.slots[j]
        if s == 0:
            return -1
        f = &t.pool[s - 1]
        if f.hash == h and memcmp(&f.key, k, sizeof(fkey)) == 0:
            return s - 1
        j = (j + 1) & (t.nslots - 1)


cdef int64_t ft_add(ftable* t, const fkey* k, uint64_t h) noexcept nogil:
    """A zeroed pool entry keyed by k; -1 when the table is full (caller evicts first)."""
    cdef uint32_t idx
    cdef uint64_t j
    if t.used >= t.max_flows:
        return -1
    if t.free_head:
        idx = t.free_head - 1
        t.free_head = t.pool[idx].next_free
    else:
        if t.high >= t.cap and ft_grow(t) != 0:
            return -1
        idx = t.high
        t.high += 1
    memset(&t.pool[idx], 0, sizeof(flow_t))
    t.pool[idx].key = k[0]
    t.pool[idx].hash = h
    t.pool[idx].in_use = True
    j = h & (t.nslots - 1)
    while t.slots[j]:
        j = (j + 1) & (t.nslots - 1)
    t.slots[j] = idx + 1
    t.used += 1
    return idx


cdef void ft_remove(ftable* t, uint32_t idx) noexcept nogil:
    """Unlink pool entry idx from the slots (backward shift) and put it on the free list."""
    cdef uint64_t mask = t.nslots - 1
    cdef uint64_t j = t.pool[idx].hash & mask, k, home
    cdef uint32_t s
    while t.slots[j] != idx + 1:
        j = (j + 1) & mask
    # Backward-shift: pull later members of the probe run into the hole.
    k = j
    while True:
        k = (k + 1) & mask
        s = t.slots[k]
        if s == 0:
            break
        home = t.pool[s - 1].hash & mask
        # Move s into the hole j unless its home lies cyclically in (j, k].
        if (j <= k and (home <= j or home > k)) or (j > k and (home <= j and home > k)):
            t.slots[j] = s
            j = k
    t.slots[j] = 0
    t.pool[idx].in_use = False
    t.pool[idx].next_free = t.free_head
    t.free_head = idx + 1
    t.used -= 1


# --- the engine's LRU order (the reference's OrderedDict order) and flow removal ----------
cdef inline void lru_append(eng_t* e, uint32_t idx) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    f.lru_prev = e.lru_tail
    f.lru_next = 0
    if e.lru_tail:
        e.ft.pool[e.lru_tail - 1].lru_next = idx + 1
    else:
        e.lru_head = idx + 1
    e.lru_tail = idx + 1


cdef inline void lru_unlink(eng_t* e, uint32_t idx) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    if f.lru_prev:
        e.ft.pool[f.lru_prev - 1].lru_next = f.lru_next
    else:
        e.lru_head = f.lru_next
    if f.lru_next:
        e.ft.pool[f.lru_next - 1].lru_prev = f.lru_prev
    else:
        e.lru_tail = f.lru_prev
    f.lru_prev = 0
    f.lru_next = 0


cdef inline void lru_touch(eng_t* e, uint32_t idx) noexcept nogil:
    if e.lru_tail != idx + 1:
        lru_unlink(e, idx)
        lru_append(e, idx)


cdef void remove_flow(eng_t* e, int64_t idx, uint8_t reason) noexcept nogil:
    cdef flow_t* f = &e.ft.pool[idx]
    emit(e, f, reason, False)
    lru_unlink(e, <uint32_t>idx)
    flow_release(f)
    ft_remove(&e.ft, <uint32_t>idx)
