# XXH64, written from the published algorithm (github.com/Cyan4973/xxHash, doc/xxhash_spec.md).
#
# No external library. Input bytes are read as little-endian explicitly, one byte at a time
# (compilers fold the shifts into one load on little-endian machines), so the result is the
# same on big-endian hosts and on unaligned buffers. A small streaming state lets the record
# checksum hash header[0:28] and the payload without copying them together.

cdef extern from *:
    """
    #define SS_P64_1 UINT64_C(0x9E3779B185EBCA87)
    #define SS_P64_2 UINT64_C(0xC2B2AE3D27D4EB4F)
    #define SS_P64_3 UINT64_C(0x165667B19E3779F9)
    #define SS_P64_4 UINT64_C(0x85EBCA77C2B2AE63)
    #define SS_P64_5 UINT64_C(0x27D4EB2F165667C5)
    """
    const uint64_t SS_P64_1
    const uint64_t SS_P64_2
    const uint64_t SS_P64_3
    const uint64_t SS_P64_4
    const uint64_t SS_P64_5


ctypedef struct _XXH64State:
    uint64_t total_len
    uint64_t v1
    uint64_t v2
    uint64_t v3
    uint64_t v4
    uint8_t mem[32]  # the bytes of an incomplete 32-byte stripe
    size_t memsize   # how many of them are in use: always < 32 between updates


cdef inline uint64_t _read_le64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint32_t _read_le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
            | (<uint32_t>p[3] << 24))


cdef inline uint64_t _rotl64(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _xxh_round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc = acc + lane * SS_P64_2
    acc = _rotl64(acc, 31)
    return acc * SS_P64_1


cdef inline uint64_t _xxh_merge_round(uint64_t acc, uint64_t val) noexcept nogil:
    acc = acc ^ _xxh_round(0, val)
    return acc * SS_P64_1 + SS_P64_4


cdef inline void _xxh64_reset(_XXH64State* st, uint64_t seed) noexcept nogil:
    st.total_len = 0
    st.v1 = seed + SS_P64_1 + SS_P64_2
    st.v2 = seed + SS_P64_2
    st.v3 = seed
    st.v4 = seed - SS_P64_1
    st.memsize = 0


cdef inline void _xxh64_stripe(_XXH64State* st, const uint8_t* p) noexcept nogil:
    st.v1 = _xxh_round(st.v1, _read_le64(p))
    st.v2 = _xxh_round(st.v2, _read_le64(p + 8))
    st.v3 = _xxh_round(st.v3, _read_le64(p + 16))
    st.v4 = _xxh_round(st.v4, _read_le64(p + 24))


cdef void _xxh64_update(_XXH64State* st, const uint8_t* p, size_t n) noexcept nogil:
    cdef size_t fill
    st.total_len += n
    if st.memsize + n < 32:  # still no full stripe: keep the bytes for later
        if n:
            memcpy(st.mem + st.memsize, p, n)
        st.memsize += n
        return
    if st.memsize:  # complete the buffered stripe first
        fill = 32 - st.memsize
        memcpy(st.mem + st.memsize, p, fill)
        _xxh64_stripe(st, st.mem)
        p += fill
        n -= fill
        st.memsize = 0
    while n >= 32:
        _xxh64_stripe(st, p)
        p += 32
        n -= 32
    if n:
        memcpy(st.mem, p, n)
        st.memsize = n


cdef uint64_t _xxh64_digest(_XXH64State* st) noexcept nogil:
    cdef uint64_t h
    cdef const uint8_t* p = st.mem
    cdef size_t n = st.memsize
    if st.total_len >= 32:
        h = (_rotl64(st.v1, 1) + _rotl64(st.v2, 7) + _rotl64(st.v3, 12)
             + _rotl64(st.v4, 18))
        h = _xxh_merge_round(h, st.v1)
        h = _xxh_merge_round(h, st.v2)
        h = _xxh_merge_round(h, st.v3)
        h = _xxh_merge_round(h, st.v4)
    else:
        h = st.v3 + SS_P64_5  # v3 is still the seed
    h += st.total_len
    while n >= 8:
        h ^= _xxh_round(0, _read_le64(p))
        h = _rotl64(h, 27) * SS_P64_1 + SS_P64_4
        p += 8
        n -= 8
    if n >= 4:
        h ^= <uint64_t>_read_le32(p) * SS_P64_1
        h = _rotl64(h, 23) * SS_P64_2 + SS_P64_3
        p += 4
        n -= 4
    while n > 0:
        h ^= <uint64_t>p[0] * SS_P64_5
        h = _rotl64(h, 11) * SS_P64_1
        p += 1
        n -= 1
    h ^= h >> 33
    h *= SS_P64_2
    h ^= h >> 29
    h *= SS_P64_3
    h ^= h >> 32
    return h


cdef uint64_t _xxh64(const uint8_t* p, size_t n, uint64_t seed) noexcept nogil:
    """XXH64 of one contiguous buffer."""
    cdef _XXH64State st
    _xxh64_reset(&st, seed)
    _xxh64_update(&st, p, n)
    return _xxh64_digest(&st)


cdef uint64_t _xxh64_2(const uint8_t* a, size_t na, const uint8_t* b, size_t nb,
                       uint64_t seed) noexcept nogil:
    """XXH64 of the concatenation ``a + b``, without building it."""
    cdef _XXH64State st
    _xxh64_reset(&st, seed)
    _xxh64_update(&st, a, na)
    _xxh64_update(&st, b, nb)
    return _xxh64_digest(&st)


def xxh64(data, seed=0):
    """XXH64 of ``data`` (the reference algorithm, frozen by golden tests)."""
    cdef uint64_t c_seed = _as_u64(seed, "seed", SS_MAX_U64)
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _xxh64(<const uint8_t*>view.buf, <size_t>view.len, c_seed)
    finally:
        PyBuffer_Release(&view)


cdef uint64_t _name_hash(name) except? 0:
    cdef Py_ssize_t n = 0
    cdef const char* utf8
    if not isinstance(name, str):
        raise TypeError(f"a step name must be a str, not {type(name).__name__}")
    # Surrogates raise UnicodeEncodeError here, as str.encode("utf-8") would.
    utf8 = PyUnicode_AsUTF8AndSize(name, &n)
    return _xxh64(<const uint8_t*>utf8, <size_t>n, SS_NAME_SEED)


cdef uint64_t _input_digest(canonical) except? 0:
    cdef Py_buffer view
    PyObject_GetBuffer(canonical, &view, PyBUF_SIMPLE)
    try:
        return _xxh64(<const uint8_t*>view.buf, <size_t>view.len, SS_INPUT_SEED)
    finally:
        PyBuffer_Release(&view)


def name_hash(name):
    """Hash of a step name: XXH64 of its UTF-8 bytes with ``NAME_SEED``."""
    return _name_hash(name)


def input_digest(canonical):
    """Digest of a step's canonical input bytes: XXH64 with ``INPUT_SEED``."""
    return _input_digest(canonical)
