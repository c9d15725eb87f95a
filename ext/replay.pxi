# The replay index: one run's recorded steps by sequence number, built from one range scan
# of its journal. ``replay`` is the hot call of a resume (once per ``ctx.step``): two
# hashes, a dict probe with the caller's own int, two C compares, a C flag set on the
# record, and the decode of the recorded result.


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
        """Decode every buffer (a run's journal range, in any order) into an index."""
        cdef ReplayIndex index = ReplayIndex.__new__(ReplayIndex)
        for buf in buffers:
            index._insert(_decode_buffer(buf))
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

    def lookup(self, seq, uint64_t name_hash, uint64_t input_digest):
        """The record at ``seq`` if it matches; ``None`` when nothing is recorded.

        A record at ``seq`` whose name hash or input digest differs raises
        ``NonDeterminismError`` (with ``run_id`` unset: the caller adds it).
        Marks the record as consumed.
        """
        return self._match(seq, name_hash, input_digest)

    def replay(self, seq, ident, input_canonical, loads):
        """A replayed step in one call: hash ``ident``, digest ``input_canonical``,
        ``lookup`` (same errors), and decode a recorded result with ``loads``.

        Returns ``NOT_RECORDED`` when nothing is recorded at ``seq``; the recorded
        output when the record is a step's result whose payload decodes to an object
        with a str ``"n"`` and an ``"o"``; otherwise the matched ``Record``, for the
        caller to read (a recorded failure, another kind, a payload that is not what
        surestep writes).
        """
        rec = self._match(seq, _name_hash(ident), _input_digest(input_canonical))
        if rec is None:
            return NOT_RECORDED
        if rec.kind != KIND_STEP:
            return rec
        try:
            data = loads(rec.payload)
        except ValueError:
            return rec
        if type(data) is dict and "o" in <dict>data and type((<dict>data).get("n")) is str:
            return (<dict>data)["o"]
        return rec

    cdef Record _match(self, seq, uint64_t name_hash, uint64_t input_digest):
        if not PyLong_Check(seq):
            raise TypeError(f"seq must be an int, not {type(seq).__name__}")
        found = self._records.get(seq)
        if found is None:
            return None
        cdef Record rec = <Record>found
        if rec.name_hash != name_hash or rec.input_digest != input_digest:
            raise NonDeterminismError(
                seq,
                recorded={
                    "name_hash": f"{rec.name_hash:016x}",
                    "input_digest": f"{rec.input_digest:016x}",
                    "kind": rec.kind,
                },
                requested={
                    "name_hash": f"{name_hash:016x}",
                    "input_digest": f"{input_digest:016x}",
                },
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
