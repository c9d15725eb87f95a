# cython: language_level=3, autotestdict=False
"""The compiled core of surestep: journal record codec, step keys, hashing, replay index.

Pure functions and small classes over bytes: no I/O, no asyncio. The topics live in
``ext/*.pxi`` and are included here so that calls between them stay C calls (the uvloop
layout). The public contract is ``src/surestep/_core.pyi``.
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

cdef extern from *:
    """
    #define SS_FORMAT_VERSION 2  /* written; format 1 is still read */
    #define SS_HEADER_SIZE 32
    #define SS_CHECKED_HEADER 28  /* the checksum covers header[0:28] + payload */
    #define SS_RUN_KEY_SIZE 16
    #define SS_STEP_KEY_SIZE 20
    #define SS_MAX_SEQ UINT64_C(0xFFFFFFFF)
    #define SS_MAX_ATTEMPT UINT64_C(0xFFFF)
    #define SS_MAX_PAYLOAD UINT64_C(0x7FFFFFFF)
    #define SS_MAX_U64 UINT64_C(0xFFFFFFFFFFFFFFFF)
    #define SS_KIND_MIN 1  /* the KIND_* values are exactly SS_KIND_MIN..SS_KIND_MAX */
    #define SS_KIND_MAX 7
    /* "Surestep" in ASCII read as a big-endian integer; never change these. */
    #define SS_NAME_SEED UINT64_C(0x5375726573746570)
    #define SS_INPUT_SEED (SS_NAME_SEED ^ UINT64_C(1))
    #define SS_CHECKSUM_SEED (SS_NAME_SEED ^ UINT64_C(2))
    """
    const int SS_FORMAT_VERSION
    const Py_ssize_t SS_HEADER_SIZE
    const Py_ssize_t SS_CHECKED_HEADER
    const Py_ssize_t SS_RUN_KEY_SIZE
    const Py_ssize_t SS_STEP_KEY_SIZE
    const uint64_t SS_MAX_SEQ
    const uint64_t SS_MAX_ATTEMPT
    const uint64_t SS_MAX_PAYLOAD
    const uint64_t SS_MAX_U64
    const int SS_KIND_MIN
    const int SS_KIND_MAX
    const uint64_t SS_NAME_SEED
    const uint64_t SS_INPUT_SEED
    const uint64_t SS_CHECKSUM_SEED

FORMAT_VERSION = SS_FORMAT_VERSION
HEADER_SIZE = SS_HEADER_SIZE
RUN_KEY_SIZE = SS_RUN_KEY_SIZE
STEP_KEY_SIZE = SS_STEP_KEY_SIZE
MAX_SEQ = SS_MAX_SEQ
MAX_PAYLOAD = SS_MAX_PAYLOAD
NAME_SEED = SS_NAME_SEED
INPUT_SEED = SS_INPUT_SEED
CHECKSUM_SEED = SS_CHECKSUM_SEED

KIND_STEP = 1
KIND_STEP_ERROR = 2
KIND_SLEEP = 3
KIND_EVENT = 4
KIND_VALUE = 5
KIND_CHILD = 6
KIND_STATE = 7
KINDS = frozenset(
    {KIND_STEP, KIND_STEP_ERROR, KIND_SLEEP, KIND_EVENT, KIND_VALUE, KIND_CHILD, KIND_STATE}
)

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
