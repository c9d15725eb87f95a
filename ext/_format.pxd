# The journal record format: its byte layout and its constants, defined once here and
# cimported by both compiled modules (_core.pyx: the codec; _lmdb.pyx: the compiled journal
# append, through chunks.pxi). What a record's body holds for each kind is Python's:
# src/surestep/journal.py. Changing anything here orphans stored journals: the golden
# tests (tests/golden) fail first.
#
# Format 2 (written; binary, self-delimiting, so one buffer may hold several records back
# to back: the LMDB store keeps many of a run's records in one value)::
#
#     u8      format version (SS_FORMAT_VERSION = 2)
#     varint  n: the length of the fields that follow
#     fields  n bytes:
#       u8      kind (SS_KIND_*)
#       u8      flags (SS_FLAG_*)
#       varint  sequence number                                        (<= SS_MAX_SEQ)
#       varint  attempt: how many attempts the step took; 0 when not a step
#                                                                      (<= SS_MAX_ATTEMPT)
#       varint  t0: microseconds since the epoch                       (FLAG_T0)
#       varint  t1: zigzag(t1 - t0) with FLAG_T0, else t1 itself       (FLAG_T1)
#       varint  length, then the step's name (UTF-8)
#       varint  length, then the key (UTF-8; decimal: FLAG_KEY_INT)    (FLAG_KEY)
#       varint  length, then the canonical input JSON                  (FLAG_INPUT)
#       body    the rest: the output JSON (FLAG_OUTPUT), else a JSON object of the
#               kind's other fields (src/surestep/journal.py)
#     u32     checksum, little-endian: low 32 bits of XXH64(version byte .. end of fields,
#             SS_CHECKSUM_SEED)
#
# varint: unsigned LEB128 in its shortest form (a longer encoding of the same value is
# corrupt). A step is matched on replay by comparing its identity (the name, or name#key)
# and its canonical input with the recorded ones byte for byte: no hash collision can pass,
# and a mismatch can say what was recorded.
#
# Format 1 (surestep 0.1; read, never written): a fixed SS_HEADER_SIZE-byte little-endian
# header, then a JSON payload, one record per buffer::
#
#     0  u8   format version (SS_FORMAT_V1 = 1)
#     1  u8   kind (SS_KIND_*)
#     2  u16  attempt
#     4  u32  sequence number
#     8  u64  step-name hash: XXH64 of the identity, SS_NAME_SEED
#     16 u64  input digest: XXH64 of the canonical input, SS_INPUT_SEED
#     24 u32  payload length (<= SS_MAX_PAYLOAD)
#     28 u32  checksum: low 32 bits of XXH64(bytes[0:SS_CHECKED_HEADER] + payload,
#             SS_CHECKSUM_SEED)
#
# A step key is the SS_RUN_KEY_SIZE-byte run key followed by the big-endian u32 sequence
# number (SS_STEP_KEY_SIZE bytes), so one run's journal is one contiguous, ordered range (the
# LMDB store keys format-2 records by the sequence number over 64: surestep.store.lmdb).

from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from *:
    """
    #define SS_FORMAT_VERSION 2  /* written */
    #define SS_FORMAT_V1 1  /* read, never written */
    #define SS_HEADER_SIZE 32  /* format 1 */
    #define SS_CHECKED_HEADER 28  /* format 1: the checksum covers header[0:28] + payload */
    #define SS_RUN_KEY_SIZE 16
    #define SS_STEP_KEY_SIZE 20
    #define SS_MAX_SEQ UINT64_C(0xFFFFFFFF)
    #define SS_MAX_ATTEMPT UINT64_C(0xFFFF)
    #define SS_MAX_PAYLOAD UINT64_C(0x7FFFFFFF)
    #define SS_MAX_MICROS INT64_C(0x3FFFFFFFFFFFFFFF)
    #define SS_KIND_STEP 1  /* a step's result */
    #define SS_KIND_STEP_ERROR 2  /* a step's final failure */
    #define SS_KIND_SLEEP 3
    #define SS_KIND_EVENT 4
    #define SS_KIND_VALUE 5
    #define SS_KIND_CHILD 6
    #define SS_KIND_STATE 7
    #define SS_KIND_MIN 1  /* the kinds are exactly SS_KIND_MIN..SS_KIND_MAX */
    #define SS_KIND_MAX 7
    #define SS_FLAG_KEY 0x01
    #define SS_FLAG_KEY_INT 0x02
    #define SS_FLAG_INPUT 0x04
    #define SS_FLAG_T0 0x08
    #define SS_FLAG_T1 0x10
    #define SS_FLAG_OUTPUT 0x20
    #define SS_FLAGS_ALL 0x3F
    /* "Surestep" in ASCII read as a big-endian integer; never change these. */
    #define SS_NAME_SEED UINT64_C(0x5375726573746570)
    #define SS_INPUT_SEED (SS_NAME_SEED ^ UINT64_C(1))
    #define SS_CHECKSUM_SEED (SS_NAME_SEED ^ UINT64_C(2))
    """
    const int SS_FORMAT_VERSION
    const int SS_FORMAT_V1
    const Py_ssize_t SS_HEADER_SIZE
    const Py_ssize_t SS_CHECKED_HEADER
    const Py_ssize_t SS_RUN_KEY_SIZE
    const Py_ssize_t SS_STEP_KEY_SIZE
    const uint64_t SS_MAX_SEQ
    const uint64_t SS_MAX_ATTEMPT
    const uint64_t SS_MAX_PAYLOAD
    const int64_t SS_MAX_MICROS
    const uint8_t SS_KIND_STEP
    const uint8_t SS_KIND_STEP_ERROR
    const uint8_t SS_KIND_SLEEP
    const uint8_t SS_KIND_EVENT
    const uint8_t SS_KIND_VALUE
    const uint8_t SS_KIND_CHILD
    const uint8_t SS_KIND_STATE
    const int SS_KIND_MIN
    const int SS_KIND_MAX
    const uint8_t SS_FLAG_KEY
    const uint8_t SS_FLAG_KEY_INT
    const uint8_t SS_FLAG_INPUT
    const uint8_t SS_FLAG_T0
    const uint8_t SS_FLAG_T1
    const uint8_t SS_FLAG_OUTPUT
    const uint8_t SS_FLAGS_ALL
    const uint64_t SS_NAME_SEED
    const uint64_t SS_INPUT_SEED
    const uint64_t SS_CHECKSUM_SEED
