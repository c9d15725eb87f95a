# The journal record codec: writes format 2, reads formats 2 and 1. The layout and the
# constants are specified once, in ext/_format.pxd.
#
# Decoding never trusts its input: every read is bounded by the buffer's length, checked
# before the read, and the record is copied out (an LMDB memoryview dies with its
# transaction).

FLAG_KEY = SS_FLAG_KEY
FLAG_KEY_INT = SS_FLAG_KEY_INT
FLAG_INPUT = SS_FLAG_INPUT
FLAG_T0 = SS_FLAG_T0
FLAG_T1 = SS_FLAG_T1
FLAG_OUTPUT = SS_FLAG_OUTPUT

cdef bytes _NULL_JSON = b"null"


cdef inline uint16_t _read_le16(const uint8_t* p) noexcept nogil:
    return <uint16_t>(p[0] | (<uint16_t>p[1] << 8))



cdef inline void _write_le32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)


cdef inline Py_ssize_t _varint_size(uint64_t v) noexcept nogil:
    cdef Py_ssize_t n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


cdef inline uint8_t* _write_varint(uint8_t* o, uint64_t v) noexcept nogil:
    while v >= 0x80:
        o[0] = <uint8_t>(v | 0x80)
        v >>= 7
        o += 1
    o[0] = <uint8_t>v
    return o + 1


cdef inline uint32_t _checksum(const uint8_t* header, const uint8_t* payload,
                               size_t payload_len) noexcept nogil:
    return <uint32_t>_xxh64_2(header, SS_CHECKED_HEADER, payload, payload_len,
                              SS_CHECKSUM_SEED)


cdef int64_t _micros(object seconds, str what) except? -1:
    """``seconds`` (an int or a finite float >= 0) in whole microseconds, at most
    MAX_MICROS."""
    cdef double s
    if type(seconds) is not float and (type(seconds) is bool or not PyLong_Check(seconds)):
        raise TypeError(f"{what} must be a float of seconds, not {type(seconds).__name__}")
    try:
        s = seconds
    except OverflowError:
        s = -1.0  # an int past a double's range
    # 2**62 us is some 146,000 years: a double that large compares before llround can overflow
    if not isfinite(s) or s < 0 or s * 1e6 >= 4.7e18 or llround(s * 1e6) > SS_MAX_MICROS:
        raise ValueError(f"{what} must be a time in seconds >= 0, got {seconds!r}")
    return llround(s * 1e6)


@cython.auto_pickle(False)
cdef class Record:
    """A decoded, validated journal record (fields are read-only)."""

    cdef readonly uint8_t version
    cdef readonly uint8_t kind
    cdef readonly uint8_t flags
    cdef readonly uint16_t attempt
    cdef readonly uint32_t seq
    cdef bytes _raw  # the whole encoded record
    # Format 2: the name and key decoded, the input and body as spans of _raw.
    cdef readonly str name
    cdef readonly object key
    cdef str _ident  # name, or name#key: what the code's step is matched against
    cdef Py_ssize_t _input_at, _input_len, _body_at, _body_len
    cdef int64_t _t0, _t1
    # Format 1: the header's hashes (the payload is _raw[HEADER_SIZE:]).
    cdef uint64_t _name_hash, _input_digest
    # Replay state, private to the ReplayIndex that decoded this record (each index decodes
    # its own records, so no record is shared): set once ``lookup`` matched it.
    cdef bint _consumed

    def __init__(self):
        raise TypeError("Record objects come from decode_record() or a ReplayIndex")

    @property
    def raw(self):
        """The record as encoded (what a store keeps)."""
        return self._raw

    @property
    def input(self):
        """The canonical input JSON; None when the record has none (format 1: see payload)."""
        if self.version == SS_FORMAT_V1 or not (self.flags & SS_FLAG_INPUT):
            return None
        return self._raw[self._input_at:self._input_at + self._input_len]

    @property
    def body(self):
        """Format 2: the output JSON (``FLAG_OUTPUT``), else a JSON object of the other
        fields. Format 1: None."""
        if self.version == SS_FORMAT_V1:
            return None
        return self._raw[self._body_at:self._body_at + self._body_len]

    @property
    def payload(self):
        """Format 1: the JSON payload after the header. Format 2: None."""
        if self.version == SS_FORMAT_V1:
            return self._raw[SS_HEADER_SIZE:]
        return None

    @property
    def t0(self):
        """When the step started (seconds since the epoch), if recorded."""
        return self._t0 / 1e6 if self.flags & SS_FLAG_T0 else None

    @property
    def t1(self):
        """When the step ended (seconds since the epoch), if recorded."""
        return self._t1 / 1e6 if self.flags & SS_FLAG_T1 else None

    @property
    def name_hash(self):
        """``name_hash`` of the step's identity (the name, or ``name#key``)."""
        return self._name_hash if self.version == SS_FORMAT_V1 else _name_hash(self._ident)

    @property
    def input_digest(self):
        """``input_digest`` of the canonical input (``null`` when there is none)."""
        if self.version == SS_FORMAT_V1:
            return self._input_digest
        inp = self.input
        return _input_digest(_NULL_JSON if inp is None else inp)

    def __repr__(self):
        if self.version == SS_FORMAT_V1:
            shown = repr(self.payload if len(self.payload) <= 64 else self.payload[:64])
            if len(self.payload) > 64:
                shown += f"... ({len(self.payload)} bytes)"
            return (
                f"Record(version=1, kind={self.kind}, attempt={self.attempt}, "
                f"seq={self.seq}, name_hash=0x{self._name_hash:016x}, "
                f"input_digest=0x{self._input_digest:016x}, payload={shown})"
            )
        body = self.body
        shown = repr(body if len(body) <= 64 else body[:64])
        if len(body) > 64:
            shown += f"... ({len(body)} bytes)"
        return (
            f"Record(version=2, kind={self.kind}, attempt={self.attempt}, seq={self.seq}, "
            f"name={self.name!r}, key={self.key!r}, input={self.input!r}, body={shown})"
        )

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        return self._raw == (<Record>other)._raw

    def __hash__(self):
        return hash(self._raw)


cdef Record _decode_v1(const uint8_t* p, Py_ssize_t n):
    """A format-1 record spanning exactly ``p[0:n]`` (``n >= 1``, ``p[0] == 1``)."""
    cdef uint32_t seq, payload_len, stored, computed
    cdef uint64_t expected
    cdef uint8_t kind
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
    rec.version = 1
    rec.kind = kind
    rec.attempt = _read_le16(p + 2)
    rec.seq = seq
    rec._name_hash = _read_le64(p + 8)
    rec._input_digest = _read_le64(p + 16)
    rec._raw = PyBytes_FromStringAndSize(<const char*>p, n)
    return rec


cdef Record _decode_v2(const uint8_t* p, Py_ssize_t n, Py_ssize_t* used):
    """The format-2 record at the start of ``p[0:n]`` (``p[0] == 2``); its length in
    ``used``."""
    cdef Py_ssize_t pos = 1, end, length_at
    cdef uint64_t v, fields_len
    cdef uint32_t stored, computed
    cdef uint8_t kind, flags
    cdef int64_t delta
    cdef object seq = None
    if not _read_varint(p, n, &pos, &fields_len):
        raise JournalCorruptError("journal record is truncated in its length")
    if fields_len > <uint64_t>(n - pos) or <uint64_t>(n - pos) - fields_len < 4:
        raise JournalCorruptError(
            f"journal record is truncated: {n} bytes where its length announces "
            f"{<object>fields_len + pos + 4}"
        )
    if fields_len < 2:
        raise JournalCorruptError(f"journal record has {fields_len} bytes of fields, too few")
    end = pos + <Py_ssize_t>fields_len
    stored = _read_le32(p + end)
    computed = <uint32_t>_xxh64(p, <size_t>end, SS_CHECKSUM_SEED)
    if stored != computed:
        length_at = pos + 2  # name the step if its number can still be read
        raise JournalCorruptError(
            f"journal record checksum mismatch: stored {stored:08x}, computed {computed:08x}",
            seq=v if _read_varint(p, end, &length_at, &v) and v <= SS_MAX_SEQ else None,
        )
    # The bytes are what a writer wrote (or a collision of a 32-bit checksum): still read
    # every field within bounds.
    kind = p[pos]
    flags = p[pos + 1]
    pos += 2
    if not _read_varint(p, end, &pos, &v) or v > SS_MAX_SEQ:
        raise JournalCorruptError("journal record has a bad sequence number")
    seq = <uint32_t>v
    if kind < SS_KIND_MIN or kind > SS_KIND_MAX:
        raise JournalCorruptError(f"journal record has unknown kind {kind}", seq=seq)
    if flags & ~SS_FLAGS_ALL or (flags & SS_FLAG_KEY_INT and not flags & SS_FLAG_KEY):
        raise JournalCorruptError(f"journal record has unknown flags {flags:#04x}", seq=seq)
    cdef Record rec = Record.__new__(Record)
    rec.version = 2
    rec.kind = kind
    rec.flags = flags
    rec.seq = <uint32_t>v
    if not _read_varint(p, end, &pos, &v) or v > SS_MAX_ATTEMPT:
        raise JournalCorruptError("journal record has a bad attempt count", seq=seq)
    rec.attempt = <uint16_t>v
    if flags & SS_FLAG_T0:
        if not _read_varint(p, end, &pos, &v) or v > <uint64_t>SS_MAX_MICROS:
            raise JournalCorruptError("journal record has a bad start time", seq=seq)
        rec._t0 = <int64_t>v
    if flags & SS_FLAG_T1:
        if not _read_varint(p, end, &pos, &v):
            raise JournalCorruptError("journal record has a bad end time", seq=seq)
        if flags & SS_FLAG_T0:  # zigzag(t1 - t0): the clock may have stepped back
            delta = <int64_t>(v >> 1) ^ -<int64_t>(v & 1)
            if delta < -rec._t0 or delta > SS_MAX_MICROS - rec._t0:
                raise JournalCorruptError("journal record has a bad end time", seq=seq)
            rec._t1 = rec._t0 + delta
        elif v > <uint64_t>SS_MAX_MICROS:
            raise JournalCorruptError("journal record has a bad end time", seq=seq)
        else:
            rec._t1 = <int64_t>v
    length_at = pos
    if not _read_varint(p, end, &pos, &v) or v > <uint64_t>(end - pos):
        raise JournalCorruptError("journal record has a truncated name", seq=seq)
    try:
        rec.name = (<const char*>p)[pos:pos + <Py_ssize_t>v].decode("utf-8")
    except UnicodeDecodeError:
        raise JournalCorruptError("journal record has a name that is not UTF-8", seq=seq) from None
    pos += <Py_ssize_t>v
    rec._ident = rec.name
    if flags & SS_FLAG_KEY:
        if not _read_varint(p, end, &pos, &v) or v > <uint64_t>(end - pos) or v == 0:
            raise JournalCorruptError("journal record has a truncated key", seq=seq)
        try:
            text = (<const char*>p)[pos:pos + <Py_ssize_t>v].decode("utf-8")
        except UnicodeDecodeError:
            raise JournalCorruptError("journal record has a key that is not UTF-8", seq=seq) from None
        pos += <Py_ssize_t>v
        if flags & SS_FLAG_KEY_INT:
            try:
                rec.key = int(text)
            except ValueError:
                rec.key = None
            if rec.key is None or str(rec.key) != text:
                raise JournalCorruptError("journal record has a malformed int key", seq=seq)
        else:
            rec.key = text
        rec._ident = f"{rec.name}#{text}"
    if flags & SS_FLAG_INPUT:
        if not _read_varint(p, end, &pos, &v) or v > <uint64_t>(end - pos) or v == 0:
            raise JournalCorruptError("journal record has a truncated input", seq=seq)
        rec._input_at = pos
        rec._input_len = <Py_ssize_t>v
        pos += <Py_ssize_t>v
    if pos >= end:
        raise JournalCorruptError("journal record has no body", seq=seq)
    rec._body_at = pos
    rec._body_len = end - pos
    used[0] = end + 4
    rec._raw = PyBytes_FromStringAndSize(<const char*>p, end + 4)
    return rec


cdef Record _decode_one(const uint8_t* p, Py_ssize_t n, Py_ssize_t* used):
    """The record at the start of ``p[0:n]``; a format-1 record must fill all ``n``."""
    if n < 1:
        raise JournalCorruptError("empty journal record")
    cdef uint8_t version = p[0]
    if version == SS_FORMAT_VERSION:
        return _decode_v2(p, n, used)
    if version == SS_FORMAT_V1:
        used[0] = n
        return _decode_v1(p, n)
    if version > SS_FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"journal record has format version {version}: it was written by a newer "
            f"surestep than this one, which reads up to version {SS_FORMAT_VERSION}; "
            "upgrade surestep to read this journal"
        )
    raise JournalCorruptError("journal record has format version 0, which never existed")


cdef Record _decode(const uint8_t* p, Py_ssize_t n):
    """Exactly one record in ``p[0:n]``."""
    cdef Py_ssize_t used = 0
    cdef Record rec = _decode_one(p, n, &used)
    if used != n:
        raise JournalCorruptError(
            f"journal record is followed by trailing bytes: {n} bytes where it has {used}",
            seq=rec.seq,
        )
    return rec


cdef Record _decode_buffer(object buf):
    cdef Py_buffer view
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        return _decode(<const uint8_t*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


cdef list _decode_all(object buf):
    """Every record in ``buf``: one of format 1, or one or more of format 2."""
    cdef Py_buffer view
    cdef const uint8_t* p
    cdef Py_ssize_t pos = 0, used = 0
    cdef list out = []
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        p = <const uint8_t*>view.buf
        if view.len < 1:
            raise JournalCorruptError("empty journal record")
        if p[0] != SS_FORMAT_VERSION:
            out.append(_decode(p, view.len))
            return out
        while pos < view.len:
            if p[pos] == SS_FORMAT_V1:  # format 1 stands alone in its value
                raise JournalCorruptError(
                    f"journal value has a format-1 record after {len(out)} format-2 record(s)",
                    seq=(<Record>out[len(out) - 1]).seq,
                )
            out.append(_decode_one(p + pos, view.len - pos, &used))
            pos += used
        return out
    finally:
        PyBuffer_Release(&view)


def holds_record(buf, seq):
    """Whether ``buf`` (format-2 records back to back) holds a record of step ``seq``:
    reads each record's length and step number only (no checksum), within bounds;
    ``JournalCorruptError`` where a length or step number cannot be read."""
    cdef uint64_t c_seq = _as_u64(seq, "seq", SS_MAX_SEQ)
    cdef Py_buffer view
    cdef int found
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        found = _chunk_holds(<const uint8_t*>view.buf, view.len, c_seq)
    finally:
        PyBuffer_Release(&view)
    if found == SS_CHUNK_BAD_LENGTH:
        raise JournalCorruptError("journal value has a record whose length cannot be read")
    if found == SS_CHUNK_BAD_SEQ:
        raise JournalCorruptError("journal value has a record without a step number")
    return found == 1


def decode_record(buf):
    """Validate and decode exactly one record (either format); the buffer is copied,
    never trusted.

    Raises ``UnsupportedFormatError`` for a newer format version and
    ``JournalCorruptError`` for any other defect (short, truncated, trailing
    bytes, unknown kind or flags, bad checksum, a field out of range). Never
    crashes the process.
    """
    return _decode_buffer(buf)


def decode_records(buf):
    """Every record in ``buf`` (a store's journal value: one format-1 record, or one or
    more format-2 records back to back), in the order they stand; errors as
    ``decode_record``."""
    return _decode_all(buf)


def encode_record(kind, seq, attempt, str name, key, input, body, bint output, t0, t1):
    """A format-2 record. ``key``: None, a str or an int; ``input``: canonical JSON or
    None; ``body``: the output JSON when ``output``, else a JSON object of the kind's
    other fields; ``t0``/``t1``: seconds since the epoch or None. ``ValueError`` on an
    out-of-range field or unknown kind, ``TypeError`` on a wrong type."""
    if type(kind) is bool or not PyLong_Check(kind):
        raise TypeError(f"kind must be an int, not {type(kind).__name__}")
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}: expected one of {sorted(KINDS)}")
    cdef uint64_t c_seq = _as_u64(seq, "seq", SS_MAX_SEQ)
    cdef uint64_t c_attempt = _as_u64(attempt, "attempt", SS_MAX_ATTEMPT)
    cdef uint8_t flags = SS_FLAG_OUTPUT if output else 0
    cdef int64_t c_t0 = 0, c_t1 = 0
    cdef uint64_t t1_field = 0
    cdef Py_ssize_t name_len = 0, key_len = 0, fields_len
    cdef const char* name_utf8 = PyUnicode_AsUTF8AndSize(name, &name_len)
    cdef const char* key_utf8 = NULL
    cdef object key_text = None
    cdef Py_buffer body_view, input_view
    cdef bint have_input = input is not None
    cdef bytes out
    cdef uint8_t* o
    cdef uint8_t* start
    if key is not None:
        flags |= SS_FLAG_KEY
        if type(key) is str:
            key_text = key
        elif type(key) is int:
            flags |= SS_FLAG_KEY_INT
            key_text = str(key)
        else:
            raise TypeError(f"a step key is a str or an int, not {type(key).__name__}")
        key_utf8 = PyUnicode_AsUTF8AndSize(key_text, &key_len)
        if key_len == 0:
            raise ValueError("a step key must not be empty")
    if t0 is not None:
        flags |= SS_FLAG_T0
        c_t0 = _micros(t0, "t0")
    if t1 is not None:
        flags |= SS_FLAG_T1
        c_t1 = _micros(t1, "t1")
        if t0 is not None:
            t1_field = (<uint64_t>(c_t1 - c_t0) << 1) ^ <uint64_t>((c_t1 - c_t0) >> 63)
        else:
            t1_field = <uint64_t>c_t1
    PyObject_GetBuffer(body, &body_view, PyBUF_SIMPLE)
    if have_input:
        try:
            PyObject_GetBuffer(input, &input_view, PyBUF_SIMPLE)
        except BaseException:
            PyBuffer_Release(&body_view)
            raise
        flags |= SS_FLAG_INPUT
    try:
        if body_view.len == 0:
            raise ValueError("a record's body must not be empty")
        if have_input and input_view.len == 0:
            raise ValueError("a record's input must not be empty (give None for no input)")
        fields_len = (2 + _varint_size(c_seq) + _varint_size(c_attempt)
                      + _varint_size(name_len) + name_len + body_view.len)
        if flags & SS_FLAG_T0:
            fields_len += _varint_size(<uint64_t>c_t0)
        if flags & SS_FLAG_T1:
            fields_len += _varint_size(t1_field)
        if key_utf8 != NULL:
            fields_len += _varint_size(key_len) + key_len
        if have_input:
            fields_len += _varint_size(input_view.len) + input_view.len
        if <uint64_t>fields_len > SS_MAX_PAYLOAD:
            raise ValueError(f"a record is at most {SS_MAX_PAYLOAD} bytes, got {fields_len}")
        out = PyBytes_FromStringAndSize(NULL, 1 + _varint_size(fields_len) + fields_len + 4)
        start = o = <uint8_t*>PyBytes_AS_STRING(out)
        o[0] = 2
        o = _write_varint(o + 1, fields_len)
        o[0] = <uint8_t>kind
        o[1] = flags
        o = _write_varint(o + 2, c_seq)
        o = _write_varint(o, c_attempt)
        if flags & SS_FLAG_T0:
            o = _write_varint(o, <uint64_t>c_t0)
        if flags & SS_FLAG_T1:
            o = _write_varint(o, t1_field)
        o = _write_varint(o, name_len)
        memcpy(o, name_utf8, name_len)
        o += name_len
        if key_utf8 != NULL:
            o = _write_varint(o, key_len)
            memcpy(o, key_utf8, key_len)
            o += key_len
        if have_input:
            o = _write_varint(o, input_view.len)
            memcpy(o, input_view.buf, input_view.len)
            o += input_view.len
        memcpy(o, body_view.buf, body_view.len)
        o += body_view.len
        _write_le32(o, <uint32_t>_xxh64(start, <size_t>(o - start), SS_CHECKSUM_SEED))
    finally:
        PyBuffer_Release(&body_view)
        if have_input:
            PyBuffer_Release(&input_view)
    return out
