# The replay index: one run's recorded steps by sequence number, built from one range scan
# of its journal. ``replay`` is the hot call of a resume (once per ``ctx.step``): a dict
# probe with the caller's own int, a str compare of the identity, a memcmp of the input,
# a C flag set on the record, and the decode of the recorded result alone.


class _NotRecorded:
    __slots__ = ()

    def __repr__(self):
        return "NOT_RECORDED"

    def __reduce__(self):
        return "NOT_RECORDED"


NOT_RECORDED = _NotRecorded()


@cython.auto_pickle(False)
cdef class ReplayIndex:
    """One run's recorded steps, by sequence number, for replay."""

    cdef dict _records   # seq (int) -> Record; tolerates gaps
    cdef int64_t _max_seq

    def __cinit__(self):
        self._records = {}
        self._max_seq = -1

    @staticmethod
    def from_records(buffers):
        """Decode every buffer (a run's journal as its store holds it: values of one or
        more records, in any order) into an index."""
        cdef ReplayIndex index = ReplayIndex.__new__(ReplayIndex)
        for buf in buffers:
            for rec in _decode_all(buf):
                index._insert(<Record>rec)
        return index

    cdef _insert(self, Record rec):
        seq = rec.seq
        if seq in self._records:
            raise JournalCorruptError("two journal records for the same step", seq=seq)
        self._records[seq] = rec
        if <int64_t>rec.seq > self._max_seq:
            self._max_seq = rec.seq

    def add(self, buf):
        """Decode and insert one record; a repeated sequence number is corrupt."""
        cdef Record rec = _decode_buffer(buf)
        self._insert(rec)
        return rec

    def lookup(self, seq, str ident not None, input_canonical):
        """The record at ``seq`` if it matches; ``None`` when nothing is recorded.

        A record at ``seq`` with another identity (``ident``: the step's name, or
        ``name#key``) or another canonical input raises ``NonDeterminismError``
        (with ``run_id`` unset: the caller adds it). Marks the record as consumed.
        """
        return self._match(seq, ident, input_canonical)

    def replay(self, seq, str ident not None, input_canonical, loads):
        """A replayed step in one call: ``lookup`` (same errors), then decode a recorded
        result with ``loads``.

        Returns ``NOT_RECORDED`` when nothing is recorded at ``seq``; the recorded
        output when the record is a step's result; otherwise the matched ``Record``,
        for the caller to read (a recorded failure, another kind, a format-1 payload
        that is not what surestep writes).
        """
        rec = self._match(seq, ident, input_canonical)
        if rec is None:
            return NOT_RECORDED
        if rec.kind != KIND_STEP:
            return rec
        if rec.version != SS_FORMAT_V1:
            if not rec.flags & SS_FLAG_OUTPUT:
                return rec
            try:
                return loads(PyBytes_FromStringAndSize(
                    <const char*>PyBytes_AS_STRING(rec._raw) + rec._body_at, rec._body_len))
            except ValueError:  # not JSON: the caller says the record is corrupt
                return rec
        try:
            data = loads(rec.payload)
        except ValueError:
            return rec
        if type(data) is dict and "o" in <dict>data and type((<dict>data).get("n")) is str:
            return (<dict>data)["o"]
        return rec

    cdef Record _match(self, seq, str ident, object input_canonical):
        if not PyLong_Check(seq):
            raise TypeError(f"seq must be an int, not {type(seq).__name__}")
        found = self._records.get(seq)
        if found is None:
            return None
        cdef Record rec = <Record>found
        cdef bint same
        cdef Py_buffer view
        cdef const char* recorded
        cdef Py_ssize_t recorded_len
        if rec.version == SS_FORMAT_V1:
            same = (rec._name_hash == _name_hash(ident)
                    and rec._input_digest == _input_digest(input_canonical))
        else:
            same = rec._ident == ident
            if same:
                if rec.flags & SS_FLAG_INPUT:
                    recorded = PyBytes_AS_STRING(rec._raw) + rec._input_at
                    recorded_len = rec._input_len
                else:
                    recorded = b"null"
                    recorded_len = 4
                PyObject_GetBuffer(input_canonical, &view, PyBUF_SIMPLE)
                same = (view.len == recorded_len
                        and memcmp(view.buf, recorded, <size_t>recorded_len) == 0)
                PyBuffer_Release(&view)
        if not same:
            raise NonDeterminismError(
                seq,
                recorded={"name": rec._ident, "kind": rec.kind, "input": rec.input}
                if rec.version != SS_FORMAT_V1 else {
                    "name_hash": f"{rec._name_hash:016x}",
                    "input_digest": f"{rec._input_digest:016x}",
                    "kind": rec.kind,
                },
                requested={"name": ident, "input": bytes(memoryview(input_canonical))},
            )
        rec._consumed = True
        return rec

    def get(self, seq):
        """The record at ``seq`` without checking or consuming it."""
        if not PyLong_Check(seq):
            raise TypeError(f"seq must be an int, not {type(seq).__name__}")
        return self._records.get(seq)

    def unconsumed(self):
        """Sequence numbers recorded but never looked up, ascending."""
        cdef Record rec
        cdef list pending = []
        for rec in self._records.values():
            if not rec._consumed:
                pending.append(rec.seq)
        pending.sort()
        return pending

    def __len__(self):
        return len(self._records)

    @property
    def max_seq(self):
        """Highest recorded sequence number, -1 when empty."""
        return self._max_seq

    def __repr__(self):
        return (
            f"<ReplayIndex {len(self._records)} records, max_seq={self._max_seq}, "
            f"{len(self.unconsumed())} unconsumed>"
        )
