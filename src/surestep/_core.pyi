"""The compiled core: journal record codec, step keys, hashing, replay index.

Pure functions and small classes over bytes: no I/O, no asyncio. Built from
the Cython sources in ``ext/``. Only the runtime and the store import it.

Journal records: format 2 (``FORMAT_VERSION``) is written, binary and
self-delimiting (one buffer may hold several records back to back); format 1
(surestep 0.1) is read, never written. The byte layout of both, the step keys and
every constant (``KIND_*``, ``FLAG_*``, the seeds, the limits) are specified once,
in ``ext/_format.pxd``; what each kind's body holds, in ``surestep/journal.py``.
"""

from collections.abc import Callable, Iterable
from typing import Any, final

from typing_extensions import Buffer

__version__: str
FORMAT_VERSION: int
HEADER_SIZE: int
RUN_KEY_SIZE: int
STEP_KEY_SIZE: int
MAX_SEQ: int
MAX_PAYLOAD: int
NAME_SEED: int
INPUT_SEED: int
CHECKSUM_SEED: int

@final
class _NotRecorded: ...

NOT_RECORDED: _NotRecorded  # ReplayIndex.replay: nothing is recorded at that seq

KIND_STEP: int
KIND_STEP_ERROR: int
KIND_SLEEP: int
KIND_EVENT: int
KIND_VALUE: int
KIND_CHILD: int
KIND_STATE: int
KINDS: frozenset[int]

def xxh64(data: Buffer, seed: int = 0) -> int:
    """XXH64 of ``data`` (the reference algorithm, frozen by golden tests)."""

def name_hash(name: str) -> int:
    """Hash of a step name: XXH64 of its UTF-8 bytes with ``NAME_SEED``."""

def input_digest(canonical: Buffer) -> int:
    """Digest of a step's canonical input bytes: XXH64 with ``INPUT_SEED``."""

def step_key(run_key: Buffer, seq: int) -> bytes:
    """``run_key`` (RUN_KEY_SIZE bytes) + big-endian u32 ``seq``."""

def split_step_key(key: Buffer) -> tuple[bytes, int]:
    """Inverse of :func:`step_key`; ``JournalCorruptError`` on a bad key."""

FLAG_KEY: int
FLAG_KEY_INT: int
FLAG_INPUT: int
FLAG_T0: int
FLAG_T1: int
FLAG_OUTPUT: int

def encode_record(
    kind: int,
    seq: int,
    attempt: int,
    name: str,
    key: str | int | None,
    input: Buffer | None,
    body: Buffer,
    output: bool,
    t0: float | None,
    t1: float | None,
) -> bytes:
    """A format-2 record. ``key``: None, a str or an int; ``input``: canonical JSON or
    None; ``body``: the output JSON when ``output``, else a JSON object of the kind's
    other fields; ``t0``/``t1``: seconds since the epoch or None. ``ValueError`` on an
    out-of-range field or unknown kind, ``TypeError`` on a wrong type."""

class Record:
    """A decoded, validated journal record (fields are read-only)."""

    @property
    def version(self) -> int: ...
    @property
    def kind(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def flags(self) -> int:
        """Format 2: FLAG_* bits; format 1: 0."""
    @property
    def raw(self) -> bytes:
        """The record as encoded (what a store keeps)."""
    @property
    def name(self) -> str | None:
        """The step's name (format 2; format 1: in the payload)."""
    @property
    def key(self) -> str | int | None: ...
    @property
    def input(self) -> bytes | None:
        """The canonical input JSON; None when the record has none (format 1: see payload)."""
    @property
    def body(self) -> bytes | None:
        """Format 2: the output JSON (``FLAG_OUTPUT``), else a JSON object of the other
        fields. Format 1: None."""
    @property
    def payload(self) -> bytes | None:
        """Format 1: the JSON payload after the header. Format 2: None."""
    @property
    def t0(self) -> float | None:
        """When the step started (seconds since the epoch), if recorded."""
    @property
    def t1(self) -> float | None:
        """When the step ended (seconds since the epoch), if recorded."""
    @property
    def name_hash(self) -> int:
        """``name_hash`` of the step's identity (the name, or ``name#key``)."""
    @property
    def input_digest(self) -> int:
        """``input_digest`` of the canonical input (``null`` when there is none)."""

def decode_record(buf: Buffer) -> Record:
    """Validate and decode exactly one record (either format); the buffer is copied,
    never trusted.

    Raises ``UnsupportedFormatError`` for a newer format version and
    ``JournalCorruptError`` for any other defect (short, truncated, trailing
    bytes, unknown kind or flags, bad checksum, a field out of range). Never
    crashes the process.
    """

def decode_records(buf: Buffer) -> list[Record]:
    """Every record in ``buf`` (a store's journal value: one format-1 record, or one or
    more format-2 records back to back), in the order they stand; errors as
    ``decode_record``."""

def holds_record(buf: Buffer, seq: int) -> bool:
    """Whether ``buf`` (format-2 records back to back) holds a record of step ``seq``:
    reads each record's length and step number only (no checksum), within bounds;
    ``JournalCorruptError`` where a length or step number cannot be read."""

class ReplayIndex:
    """One run's recorded steps, by sequence number, for replay."""

    def __init__(self) -> None: ...
    @staticmethod
    def from_records(buffers: Iterable[Buffer]) -> ReplayIndex:
        """Decode every buffer (a run's journal as its store holds it: values of one or
        more records, in any order) into an index."""

    def add(self, buf: Buffer) -> Record:
        """Decode and insert one record; a repeated sequence number is corrupt."""

    def lookup(self, seq: int, ident: str, input_canonical: Buffer) -> Record | None:
        """The record at ``seq`` if it matches; ``None`` when nothing is recorded.

        A record at ``seq`` with another identity (``ident``: the step's name, or
        ``name#key``) or another canonical input raises ``NonDeterminismError``
        (with ``run_id`` unset: the caller adds it). Marks the record as consumed.
        """

    def replay(
        self, seq: int, ident: str, input_canonical: Buffer, loads: Callable[[bytes], Any]
    ) -> Any:
        """A replayed step in one call: ``lookup`` (same errors), then decode a recorded
        result with ``loads``.

        Returns ``NOT_RECORDED`` when nothing is recorded at ``seq``; the recorded
        output when the record is a step's result; otherwise the matched ``Record``,
        for the caller to read (a recorded failure, another kind, a format-1 payload
        that is not what surestep writes).
        """

    def get(self, seq: int) -> Record | None:
        """The record at ``seq`` without checking or consuming it."""

    def unconsumed(self) -> list[int]:
        """Sequence numbers recorded but never looked up, ascending."""

    def __len__(self) -> int: ...
    @property
    def max_seq(self) -> int:
        """Highest recorded sequence number, -1 when empty."""
