# The journal record codec: a fixed 32-byte little-endian header, then the payload.
#
#     0  u8   format version          16 u64  input digest
#     1  u8   kind                    24 u32  payload length
#     2  u16  attempt                 28 u32  checksum: low 32 bits of
#     4  u32  sequence number                 XXH64(bytes[0:28] + payload, CHECKSUM_SEED)
#     8  u64  step-name hash
#
# Decoding never trusts its input: every read is bounded by the buffer's length, checked
# before the read, and the payload is copied out (an LMDB memoryview dies with its
# transaction).


cdef inline uint16_t _read_le16(const uint8_t* p) noexcept nogil:
    return <uint16_t>(p[0] | (<uint16_t>p[1] << 8))


cdef inline void _write_le16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)


cdef inline void _write_le32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)


cdef inline void _write_le64(uint8_t* p, uint64_t v) noexcept nogil:
    _write_le32(p, <uint32_t>v)
    _write_le32(p + 4, <uint32_t>(v >> 32))


cdef inline uint32_t _checksum(const uint8_t* header, const uint8_t* payload,
                               size_t payload_len) noexcept nogil:
    return <uint32_t>_xxh64_2(header, SS_CHECKED_HEADER, payload, payload_len,
                              SS_CHECKSUM_SEED)


@cython.auto_pickle(False)
cdef class Record:
    """A decoded, validated journal record (fields are read-only)."""

    cdef readonly uint8_t version
    cdef readonly uint8_t kind
    cdef readonly uint16_t attempt
    cdef readonly uint32_t seq
    cdef readonly uint64_t name_hash
    cdef readonly uint64_t input_digest
    cdef readonly bytes payload
    # Replay state, private to the ReplayIndex that decoded this record (each index decodes
    # its own records, so no record is shared): set once ``lookup`` matched it.
    cdef bint _consumed

    def __init__(self):
        raise TypeError("Record objects come from decode_record() or a ReplayIndex")

    def __repr__(self):
        shown = repr(self.payload if len(self.payload) <= 64 else self.payload[:64])
        if len(self.payload) > 64:
            shown += f"... ({len(self.payload)} bytes)"
        return (
            f"Record(version={self.version}, kind={self.kind}, attempt={self.attempt}, "
            f"seq={self.seq}, name_hash=0x{self.name_hash:016x}, "
            f"input_digest=0x{self.input_digest:016x}, payload={shown})"
        )

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        cdef Record o = <Record>other
        return (
            self.version == o.version
            and self.kind == o.kind
            and self.attempt == o.attempt
            and self.seq == o.seq
            and self.name_hash == o.name_hash
            and self.input_digest == o.input_digest
            and self.payload == o.payload
        )

    def __hash__(self):
        return hash((self.version, self.kind, self.attempt, self.seq, self.name_hash,
                     self.input_digest, self.payload))


cdef Record _decode(const uint8_t* p, Py_ssize_t n):
    """Validate and decode the ``n`` bytes at ``p``. Reads nothing past ``p + n``."""
    cdef uint8_t version, kind
    cdef uint32_t seq, payload_len, stored, computed
    cdef uint64_t expected
    if n < 1:
        raise JournalCorruptError("empty journal record")
    version = p[0]
    if version > SS_FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"journal record has format version {version}: it was written by a newer "
            f"surestep than this one, which reads up to version {SS_FORMAT_VERSION}; "
            "upgrade surestep to read this journal"
        )
    if version == 0:
        raise JournalCorruptError("journal record has format version 0, which never existed")
    if n < SS_HEADER_SIZE:
        raise JournalCorruptError(
            f"journal record is {n} bytes, shorter than its {SS_HEADER_SIZE}-byte header",
            seq=_read_le32(p + 4) if n >= 8 else None,
        )
    seq = _read_le32(p + 4)
    payload_len = _read_le32(p + 24)
    expected = <uint64_t>SS_HEADER_SIZE + payload_len
    if <uint64_t>n != expected:
        what = "truncated" if <uint64_t>n < expected else "followed by trailing bytes"
        raise JournalCorruptError(
            f"journal record is {what}: {n} bytes where its header announces {expected}",
            seq=seq,
        )
    stored = _read_le32(p + 28)
    computed = _checksum(p, p + SS_HEADER_SIZE, payload_len)
    if stored != computed:
        raise JournalCorruptError(
            f"journal record checksum mismatch: stored {stored:08x}, computed {computed:08x}",
            seq=seq,
        )
    kind = p[1]
    if kind < SS_KIND_MIN or kind > SS_KIND_MAX:
        raise JournalCorruptError(f"journal record has unknown kind {kind}", seq=seq)
    cdef Record rec = Record.__new__(Record)
    rec.version = version
    rec.kind = kind
    rec.attempt = _read_le16(p + 2)
    rec.seq = seq
    rec.name_hash = _read_le64(p + 8)
    rec.input_digest = _read_le64(p + 16)
    rec.payload = PyBytes_FromStringAndSize(<const char*>p + SS_HEADER_SIZE, payload_len)
    return rec


cdef Record _decode_buffer(object buf):
    cdef Py_buffer view
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return _decode(<const uint8_t*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


def decode_record(buf):
    """Validate and decode one record; the buffer is copied, never trusted.

    Raises ``UnsupportedFormatError`` for a newer format version and
    ``JournalCorruptError`` for any other defect (short, truncated, trailing
    bytes, unknown kind, bad checksum). Never crashes the process.
    """
    return _decode_buffer(buf)


def encode_record(kind, seq, attempt, name_hash, input_digest, payload):
    """Header + payload; ``ValueError`` on an out-of-range field or unknown kind."""
    if not PyLong_Check(kind):
        raise TypeError(f"kind must be an int, not {type(kind).__name__}")
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}: expected one of {sorted(KINDS)}")
    cdef uint8_t c_kind = kind
    cdef uint32_t c_seq = <uint32_t>_as_u64(seq, "seq", SS_MAX_SEQ)
    cdef uint16_t c_attempt = <uint16_t>_as_u64(attempt, "attempt", SS_MAX_ATTEMPT)
    cdef uint64_t c_name = _as_u64(name_hash, "name_hash", SS_MAX_U64)
    cdef uint64_t c_input = _as_u64(input_digest, "input_digest", SS_MAX_U64)
    cdef Py_buffer view
    cdef bytes out
    cdef uint8_t* o
    cdef size_t n
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        if <uint64_t>view.len > SS_MAX_PAYLOAD:
            raise ValueError(
                f"a record payload is at most {SS_MAX_PAYLOAD} bytes, got {view.len}"
            )
        n = <size_t>view.len
        out = PyBytes_FromStringAndSize(NULL, SS_HEADER_SIZE + view.len)
        o = <uint8_t*>PyBytes_AS_STRING(out)
        o[0] = SS_FORMAT_VERSION
        o[1] = c_kind
        _write_le16(o + 2, c_attempt)
        _write_le32(o + 4, c_seq)
        _write_le64(o + 8, c_name)
        _write_le64(o + 16, c_input)
        _write_le32(o + 24, <uint32_t>n)
        if n:
            memcpy(o + SS_HEADER_SIZE, view.buf, n)
        _write_le32(o + 28, _checksum(o, o + SS_HEADER_SIZE, n))
    finally:
        PyBuffer_Release(&view)
    return out
