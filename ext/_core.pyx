# cython: language_level=3, autotestdict=False
"""The compiled core of surestep: journal record codec, step keys, hashing, replay index.

Pure functions and small classes over bytes: no I/O, no asyncio. The topics live in
``ext/*.pxi`` and are included here so that calls between them stay C calls (the uvloop
layout). The public contract is ``src/surestep/_core.pyi``; the record format, ``_format.pxd``.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_Check
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.math cimport isfinite, llround
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from surestep._version import __version__
from surestep.errors import JournalCorruptError, NonDeterminismError, UnsupportedFormatError

# ---------------------------------------------------------------- constants (frozen)

from _format cimport *  # the record format, defined once: ext/_format.pxd

cdef extern from *:
    """
    #define SS_MAX_U64 UINT64_C(0xFFFFFFFFFFFFFFFF)
    """
    const uint64_t SS_MAX_U64

FORMAT_VERSION = SS_FORMAT_VERSION
HEADER_SIZE = SS_HEADER_SIZE
RUN_KEY_SIZE = SS_RUN_KEY_SIZE
STEP_KEY_SIZE = SS_STEP_KEY_SIZE
MAX_SEQ = SS_MAX_SEQ
MAX_PAYLOAD = SS_MAX_PAYLOAD
NAME_SEED = SS_NAME_SEED
INPUT_SEED = SS_INPUT_SEED
CHECKSUM_SEED = SS_CHECKSUM_SEED

KIND_STEP = SS_KIND_STEP
KIND_STEP_ERROR = SS_KIND_STEP_ERROR
KIND_SLEEP = SS_KIND_SLEEP
KIND_EVENT = SS_KIND_EVENT
KIND_VALUE = SS_KIND_VALUE
KIND_CHILD = SS_KIND_CHILD
KIND_STATE = SS_KIND_STATE
KINDS = frozenset(range(SS_KIND_MIN, SS_KIND_MAX + 1))

# ---------------------------------------------------------------- shared helpers


cdef uint64_t _as_u64(object value, str what, uint64_t maximum) except? 0:
    """``value`` (an int) as a C integer in ``[0, maximum]``; ValueError outside it."""
    cdef unsigned long long v
    if not PyLong_Check(value):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    try:
        v = PyLong_AsUnsignedLongLong(value)
    except OverflowError:  # negative, or past 64 bits
        raise ValueError(f"{what} must be in [0, {maximum}], got {value}") from None
    if v > maximum:
        raise ValueError(f"{what} must be in [0, {maximum}], got {value}")
    return v


include "xxhash.pxi"
include "chunks.pxi"
include "codec.pxi"
include "keys.pxi"
include "replay.pxi"
