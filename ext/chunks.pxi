# Reading format-2 records back to back (a chunk of the LMDB journal) without decoding
# them: included by both _core.pyx (the codec) and _lmdb.pyx (the compiled journal append),
# so that the one definition of a record's framing serves both. Needs libc.stdint's types
# and the format's constants (ext/_format.pxd).

cdef extern from *:
    """
    #define SS_CHUNK_BAD_LENGTH (-1)  /* a record whose length cannot be read */
    #define SS_CHUNK_BAD_SEQ (-2)  /* a record without a step number */
    """
    const int SS_CHUNK_BAD_LENGTH
    const int SS_CHUNK_BAD_SEQ


cdef inline bint _read_varint(const uint8_t* p, Py_ssize_t end, Py_ssize_t* pos,
                              uint64_t* out) noexcept nogil:
    """Read a minimal LEB128 varint at ``p[pos[0]]`` below ``end``; False if it is cut off,
    longer than 64 bits or not minimal."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef uint8_t b
    while True:
        if pos[0] >= end:
            return False
        b = p[pos[0]]
        pos[0] += 1
        if shift == 63 and b > 1:
            return False
        v |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            if b == 0 and shift > 0:
                return False  # not minimal: the same value has a shorter encoding
            out[0] = v
            return True
        shift += 7
        if shift > 63:
            return False


cdef inline int _chunk_holds(const uint8_t* p, Py_ssize_t n, uint64_t seq) noexcept nogil:
    """1 if the records in ``p[0:n]`` include one of step ``seq``, 0 if not, or
    SS_CHUNK_BAD_LENGTH / SS_CHUNK_BAD_SEQ where the framing cannot be read (each record:
    SS_FORMAT_VERSION, varint length of kind..payload, kind, flags, varint seq, ..., 4-byte
    checksum)."""
    cdef Py_ssize_t pos = 0, at, end
    cdef uint64_t fields_len, v
    while pos < n:
        at = pos + 1
        if (p[pos] != SS_FORMAT_VERSION or not _read_varint(p, n, &at, &fields_len)
                or fields_len < 2 or fields_len > <uint64_t>(n - at)
                or <uint64_t>(n - at) - fields_len < 4):
            return SS_CHUNK_BAD_LENGTH
        end = at + <Py_ssize_t>fields_len
        at += 2  # kind, flags
        if not _read_varint(p, end, &at, &v):
            return SS_CHUNK_BAD_SEQ
        if v == seq:
            return 1
        pos = end + 4
    return 0
