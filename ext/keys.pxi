# Step keys: the 16-byte run key, then the big-endian u32 sequence number, so one run's
# journal is one contiguous LMDB range in step order.


def step_key(run_key, seq):
    """``run_key`` (RUN_KEY_SIZE bytes) + big-endian u32 ``seq``."""
    cdef uint32_t c_seq = <uint32_t>_as_u64(seq, "seq", SS_MAX_SEQ)
    cdef Py_buffer view
    cdef bytes out
    cdef uint8_t* o
    PyObject_GetBuffer(run_key, &view, PyBUF_SIMPLE)
    try:
        if view.len != SS_RUN_KEY_SIZE:
            raise ValueError(f"a run key is {SS_RUN_KEY_SIZE} bytes, got {view.len}")
        out = PyBytes_FromStringAndSize(NULL, SS_STEP_KEY_SIZE)
        o = <uint8_t*>PyBytes_AS_STRING(out)
        memcpy(o, view.buf, SS_RUN_KEY_SIZE)
    finally:
        PyBuffer_Release(&view)
    o[16] = <uint8_t>(c_seq >> 24)
    o[17] = <uint8_t>(c_seq >> 16)
    o[18] = <uint8_t>(c_seq >> 8)
    o[19] = <uint8_t>c_seq
    return out


def split_step_key(key):
    """Inverse of :func:`step_key`; ``JournalCorruptError`` on a bad key."""
    cdef Py_buffer view
    cdef const uint8_t* p
    cdef uint32_t seq
    PyObject_GetBuffer(key, &view, PyBUF_SIMPLE)
    try:
        if view.len != SS_STEP_KEY_SIZE:
            raise JournalCorruptError(f"a step key is {SS_STEP_KEY_SIZE} bytes, got {view.len}")
        p = <const uint8_t*>view.buf
        seq = ((<uint32_t>p[16] << 24) | (<uint32_t>p[17] << 16) | (<uint32_t>p[18] << 8)
               | <uint32_t>p[19])
        return (PyBytes_FromStringAndSize(<const char*>p, SS_RUN_KEY_SIZE), seq)
    finally:
        PyBuffer_Release(&view)
