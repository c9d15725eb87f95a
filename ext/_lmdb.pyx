# cython: language_level=3, autotestdict=False, auto_pickle=False
"""surestep's binding of LMDB, the C library in ``ext/lmdb/`` (LMDB 0.9.36 with py-lmdb
3.0.0's hardening patches and one of surestep's: ``ext/lmdb/README.md``).

The subset of the ``lmdb`` package's API that ``surestep.store.lmdb`` uses, with one
difference that is its reason to exist: gets, puts, deletes and cursor moves keep the GIL.
They cost a microsecond or two, and the ``lmdb`` package releases the GIL around each;
with the event loop running Python on another thread, taking it back waited for the
loop's next switch, 15-35 us per put (benchmarks/RESULTS.md, fourth round). The calls
that can wait, on the disk or on another process, release it: opening, beginning a write
transaction (LMDB's writer lock), committing one (the fsync), resizing and closing.

A transaction and its cursors belong to one thread at a time. A read transaction with
``buffers=True`` returns memoryviews of the map, valid until it ends; otherwise values
are bytes copies.

One piece of the store is compiled here too: adding a record to a run's journal in the
layout of ``surestep.store.lmdb`` (chunks of the records of 64 consecutive steps), for
one record (``Transaction.put_record``) or for a group commit's run of appends, each
checked against its run's fence, in one call that releases the GIL
(``Transaction.append_records``): the writer thread then spends the batch in C while
the event loop runs Python.
"""

import os

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy

from _format cimport SS_FORMAT_V1, SS_FORMAT_VERSION, SS_RUN_KEY_SIZE

include "chunks.pxi"


cdef extern from "Python.h":
    object PyMemoryView_FromMemory(char *mem, Py_ssize_t size, int flags)
    int PyBUF_READ


cdef extern from "lmdb.h" nogil:
    ctypedef struct MDB_env:
        pass
    ctypedef struct MDB_txn:
        pass
    ctypedef struct MDB_cursor:
        pass
    ctypedef unsigned int MDB_dbi
    ctypedef struct MDB_val:
        size_t mv_size
        void *mv_data
    ctypedef struct MDB_stat:
        unsigned int ms_psize
        unsigned int ms_depth
        size_t ms_branch_pages
        size_t ms_leaf_pages
        size_t ms_overflow_pages
        size_t ms_entries
    ctypedef struct MDB_envinfo:
        void *me_mapaddr
        size_t me_mapsize
        size_t me_last_pgno
        size_t me_last_txnid
        unsigned int me_maxreaders
        unsigned int me_numreaders
    ctypedef enum MDB_cursor_op:
        MDB_FIRST
        MDB_GET_CURRENT
        MDB_LAST
        MDB_NEXT
        MDB_PREV
        MDB_SET_KEY
        MDB_SET_RANGE

    int MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH
    int MDB_SUCCESS, MDB_NOTFOUND, MDB_KEYEXIST, MDB_MAP_FULL, MDB_MAP_RESIZED
    unsigned int MDB_NOSYNC, MDB_NOMETASYNC, MDB_RDONLY, MDB_NOTLS, MDB_NORDAHEAD, MDB_WRITEMAP
    unsigned int MDB_NOLOCK
    unsigned int MDB_CREATE, MDB_NOOVERWRITE, MDB_APPEND

    char *mdb_strerror(int err)
    int mdb_env_create(MDB_env **env)
    int mdb_env_open(MDB_env *env, const char *path, unsigned int flags, unsigned int mode)
    void mdb_env_close(MDB_env *env)
    int mdb_env_set_mapsize(MDB_env *env, size_t size)
    int mdb_env_set_maxreaders(MDB_env *env, unsigned int readers)
    int mdb_env_set_maxdbs(MDB_env *env, MDB_dbi dbs)
    int mdb_env_info(MDB_env *env, MDB_envinfo *stat)
    int mdb_env_sync(MDB_env *env, int force)
    int mdb_txn_begin(MDB_env *env, MDB_txn *parent, unsigned int flags, MDB_txn **txn)
    int mdb_txn_commit(MDB_txn *txn)
    void mdb_txn_abort(MDB_txn *txn)
    void mdb_txn_reset(MDB_txn *txn)
    int mdb_txn_renew(MDB_txn *txn)
    int mdb_dbi_open(MDB_txn *txn, const char *name, unsigned int flags, MDB_dbi *dbi)
    int mdb_stat(MDB_txn *txn, MDB_dbi dbi, MDB_stat *stat)
    int mdb_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
    int mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags)
    int mdb_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
    int mdb_cursor_open(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cursor)
    void mdb_cursor_close(MDB_cursor *cursor)
    int mdb_cursor_get(MDB_cursor *cursor, MDB_val *key, MDB_val *data, MDB_cursor_op op)




cdef class Environment


class Error(Exception):
    """An LMDB call failed; ``code`` is LMDB's return code, ``errno`` the system's error
    number when it was one."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code
        self.errno = code if code > 0 else None


class MapFullError(Error):
    """The map is full: grow it (``Environment.set_mapsize``) and redo the transaction."""


class MapResizedError(Error):
    """Another process grew the map: adopt its size (``set_mapsize(0)``) and retry."""


class ReadonlyError(Error):
    """A write to an environment or transaction opened read-only, or without permission."""


class DiskError(Error):
    """The disk is full."""


cdef extern from "errno.h":
    int EACCES, ENOSPC, EDQUOT, EROFS, EINVAL, EINTR
    int errno


# Linux's fallocate(2), not posix_fallocate: where a filesystem cannot allocate, glibc's
# posix_fallocate writes a byte into every block it finds zero, which races with a
# process writing the same block through its map.
cdef extern from *:
    """
    #include <errno.h>
    #ifdef __linux__
    #include <fcntl.h>
    #define SURESTEP_ALLOCATE(fd, size) fallocate((fd), 0, 0, (off_t)(size))
    #else
    #define SURESTEP_ALLOCATE(fd, size) (errno = EOPNOTSUPP, -1)
    #endif
    #ifdef __linux__
    #include <sys/vfs.h>
    static long long surestep_fs_type(int fd) {
        struct statfs s;
        return fstatfs(fd, &s) ? -1 : (long long)(unsigned int)s.f_type;
    }
    #else
    static long long surestep_fs_type(int fd) { (void)fd; return 0; }
    #endif
    """
    int SURESTEP_ALLOCATE(int fd, long long size) nogil
    long long surestep_fs_type(int fd) nogil


cdef object _error(str what, int rc):
    message = f"{what}: {mdb_strerror(rc).decode('utf-8', 'replace')}"
    if rc == MDB_MAP_FULL:
        return MapFullError(message, rc)
    if rc == MDB_MAP_RESIZED:
        return MapResizedError(message, rc)
    if rc == EACCES or rc == EROFS:
        return ReadonlyError(message, rc)
    if rc == ENOSPC or rc == EDQUOT:
        return DiskError(message, rc)
    return Error(message, rc)


# The journal's layout (surestep.store.lmdb's docstring has all of it).
cdef enum:
    _SHIFT = 6  # a group: the steps whose numbers agree but in the low 6 bits
    _IN_GROUP = (1 << _SHIFT) - 1
    _CHUNK = 1984  # most bytes of a chunk (inside a 4 KiB leaf page)
    _LEASE_HEAD = 24  # a lease starts with its fence (u64 LE), lease end and time written

CHUNK_SHIFT = _SHIFT
CHUNK_BYTES = _CHUNK

# What put_record and append_records answer for each record.
cdef enum:
    _APPENDED = 0
    _RECORDED_ALREADY = 1
    _RUN_NOT_FOUND = 2
    _LEASE_LOST = 3
    _CORRUPT_CHUNK = 4
    _CORRUPT_LEASE = 5
    _INVALID = 6  # not an append: a run key not of 16 bytes, an empty record, ...
    _FAILED = 7  # an LMDB error, in rc
    _EXISTS = 8  # insert_run: the run has a row already
    _STALE = 9  # insert_run: the deployments are not those the caller saw

APPENDED = _APPENDED
RECORDED_ALREADY = _RECORDED_ALREADY
RUN_NOT_FOUND = _RUN_NOT_FOUND
LEASE_LOST = _LEASE_LOST
CORRUPT_CHUNK = _CORRUPT_CHUNK
CORRUPT_LEASE = _CORRUPT_LEASE
INVALID = _INVALID
EXISTS = _EXISTS
STALE = _STALE


cdef inline void _be32(uint8_t* o, uint32_t v) noexcept nogil:
    o[0], o[1], o[2], o[3] = <uint8_t>(v >> 24), <uint8_t>(v >> 16), <uint8_t>(v >> 8), <uint8_t>v


cdef int _put_alone(MDB_txn* txn, MDB_dbi db, MDB_val* k, MDB_val* v, int* rc) noexcept nogil:
    cdef MDB_val old
    rc[0] = mdb_get(txn, db, k, &old)
    if rc[0] == 0:
        return _RECORDED_ALREADY
    if rc[0] != MDB_NOTFOUND:
        return _FAILED
    rc[0] = mdb_put(txn, db, k, v, 0)
    return _FAILED if rc[0] else _APPENDED


cdef int _scan(MDB_txn* txn, MDB_dbi db, uint8_t* key, uint32_t seq, size_t n,
               MDB_val* room, int* room_tail, int* rc) noexcept nogil:
    """Look for a record of step ``seq`` where ``_put_record`` puts one (``key``: the run
    key, room for 5 bytes more): its step key (format 1), its group's chunks, its own key
    in the group (a record too large for a chunk). _RECORDED_ALREADY, _CORRUPT_CHUNK,
    _FAILED or _APPENDED (none there). With ``room``, also the first chunk of the group
    with room for ``n`` bytes more (``room_tail``, its last key byte; ``room.mv_size`` 0:
    a new chunk; -1: none). ``key`` is left as the step's own key in the group."""
    cdef MDB_val k, v
    cdef int i, found
    k.mv_data = key
    _be32(key + SS_RUN_KEY_SIZE, seq)
    k.mv_size = SS_RUN_KEY_SIZE + 4
    rc[0] = mdb_get(txn, db, &k, &v)
    if rc[0] == 0:
        return _RECORDED_ALREADY
    if rc[0] != MDB_NOTFOUND:
        return _FAILED
    _be32(key + SS_RUN_KEY_SIZE, seq >> _SHIFT)
    k.mv_size = SS_RUN_KEY_SIZE + 5
    for i in range(1 << _SHIFT):  # every chunk of the group, for a record of the step
        key[SS_RUN_KEY_SIZE + 4] = <uint8_t>(255 - i)
        rc[0] = mdb_get(txn, db, &k, &v)
        if rc[0] == MDB_NOTFOUND:
            if room != NULL and room_tail[0] < 0:
                room_tail[0], room.mv_size = 255 - i, 0
            break
        if rc[0]:
            return _FAILED
        found = _chunk_holds(<const uint8_t*>v.mv_data, <Py_ssize_t>v.mv_size, seq)
        if found < 0:
            return _CORRUPT_CHUNK
        if found:
            return _RECORDED_ALREADY
        if room != NULL and room_tail[0] < 0 and v.mv_size + n <= _CHUNK:
            room_tail[0], room[0] = 255 - i, v
    key[SS_RUN_KEY_SIZE + 4] = <uint8_t>(seq & _IN_GROUP)
    rc[0] = mdb_get(txn, db, &k, &v)
    if rc[0] == 0:
        return _RECORDED_ALREADY
    if rc[0] != MDB_NOTFOUND:
        return _FAILED
    rc[0] = 0
    return _APPENDED


cdef int _put_record(MDB_txn* txn, MDB_dbi db, const uint8_t* run_key, uint32_t seq,
                     const uint8_t* record, size_t n, int* rc) noexcept nogil:
    """Add one encoded record to the run's journal: into the first chunk of its group
    with room (a new chunk after the last), alone under its own key if larger than a
    chunk, or under its step key if it is of format 1. Nothing is written when a record
    of the step is there already, in either format (a run forked from surestep 0.1 has
    its old steps under their step keys)."""
    cdef uint8_t key[SS_RUN_KEY_SIZE + 5]
    cdef uint8_t joined[_CHUNK]
    cdef MDB_val k, v, room
    cdef int found, room_tail = -1
    cdef bint v1 = n and record[0] == SS_FORMAT_V1  # a fork of a run recorded by 0.1
    room.mv_data, room.mv_size = NULL, 0
    memcpy(key, run_key, SS_RUN_KEY_SIZE)
    found = _scan(txn, db, key, seq, n, NULL if v1 else &room, &room_tail, rc)
    if found != _APPENDED:
        return found
    k.mv_data, k.mv_size = key, SS_RUN_KEY_SIZE + 5  # the step's own key in its group
    v.mv_data, v.mv_size = <void*>record, n
    if v1:  # under its step key
        _be32(key + SS_RUN_KEY_SIZE, seq)
        k.mv_size = SS_RUN_KEY_SIZE + 4
        return _put_alone(txn, db, &k, &v, rc)
    if n > _CHUNK:
        return _put_alone(txn, db, &k, &v, rc)
    if room_tail < 0:  # cannot be: a group has as many chunks as steps
        return _CORRUPT_CHUNK
    key[SS_RUN_KEY_SIZE + 4] = <uint8_t>room_tail
    if room.mv_size:  # the chunk's bytes, then the record (the chunk's memory is LMDB's)
        memcpy(joined, room.mv_data, room.mv_size)
        memcpy(joined + room.mv_size, record, n)
        v.mv_data, v.mv_size = joined, room.mv_size + n
    rc[0] = mdb_put(txn, db, &k, &v, 0)
    return _FAILED if rc[0] else _APPENDED


cdef int _recorded(MDB_txn* txn, MDB_dbi db, const uint8_t* run_key, uint32_t seq,
                   int* rc) noexcept nogil:
    """_RECORDED_ALREADY if the run's journal holds a record of step ``seq`` in either
    format, else _APPENDED (or an error): what ``_put_record`` would decide, read only."""
    cdef uint8_t key[SS_RUN_KEY_SIZE + 5]
    memcpy(key, run_key, SS_RUN_KEY_SIZE)
    return _scan(txn, db, key, seq, 0, NULL, NULL, rc)


cdef bytes _run_value(MDB_txn* txn, MDB_dbi db, bytes run_key, str what):
    """The value of ``run_key`` in ``db``, copied (it outlives the transaction), or None."""
    cdef MDB_val k, v
    k.mv_data, k.mv_size = <void*><const char*>run_key, SS_RUN_KEY_SIZE
    rc = mdb_get(txn, db, &k, &v)
    if rc == MDB_NOTFOUND:
        return None
    if rc:
        raise _error(what, rc)
    return (<const char*>v.mv_data)[:v.mv_size]


cdef int _fence_holds(MDB_txn* txn, MDB_dbi leases, const uint8_t* run_key, uint64_t fence,
                      int* rc) noexcept nogil:
    """_APPENDED if the run's lease carries ``fence`` (a little-endian u64 first)."""
    cdef MDB_val k, v
    cdef const uint8_t* p
    cdef uint64_t stored = 0
    cdef int i
    k.mv_data, k.mv_size = <void*>run_key, SS_RUN_KEY_SIZE
    rc[0] = mdb_get(txn, leases, &k, &v)
    if rc[0] == MDB_NOTFOUND:
        rc[0] = 0
        return _RUN_NOT_FOUND
    if rc[0]:
        return _FAILED
    if v.mv_size < _LEASE_HEAD:
        return _CORRUPT_LEASE
    p = <const uint8_t*>v.mv_data
    for i in range(8):
        stored |= (<uint64_t>p[i]) << (8 * i)
    return _APPENDED if stored == fence else _LEASE_LOST


cdef struct _Pending:  # one append of append_records, as C sees it
    const uint8_t* run_key
    uint64_t fence
    uint32_t seq
    const uint8_t* record
    size_t n


cdef int _pending(object one, _Pending* p, list keep) except -1:
    """Fill ``p`` from one append of append_records: ``_APPENDED`` (to be tried) or
    ``_INVALID``; its bytes go to ``keep``, which outlives ``p``."""
    run_key, record = one.run_key, one.record
    if type(run_key) is not bytes or len(<bytes>run_key) != SS_RUN_KEY_SIZE:
        return _INVALID
    if type(record) is not bytes or not record:
        return _INVALID
    try:
        p.fence = one.fence
        p.seq = one.seq
    except (TypeError, OverflowError):
        return _INVALID
    keep.append(run_key)
    keep.append(record)
    p.run_key = <const uint8_t*><char*>run_key
    p.record = <const uint8_t*><char*>record
    p.n = len(<bytes>record)
    return _APPENDED


def version():
    """The LMDB library's version, as ``(major, minor, patch)``."""
    return (MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH)


def filesystem_type(int fd):
    """The magic number of the filesystem file ``fd`` is on (statfs(2)'s ``f_type``,
    Linux), 0 elsewhere; OSError if it cannot be read."""
    cdef long long kind = surestep_fs_type(fd)
    if kind < 0:
        raise OSError(errno, os.strerror(errno))
    return kind


def allocate(int fd, long long size):
    """Allocate the blocks of file ``fd`` from its start up to ``size`` bytes (its holes;
    a shorter file is lengthened), with Linux's fallocate(2): OSError where the disk
    cannot supply them (ENOSPC, EDQUOT) or the filesystem cannot allocate (EOPNOTSUPP;
    always, elsewhere than Linux)."""
    cdef int rc, err
    while True:
        with nogil:
            rc = SURESTEP_ALLOCATE(fd, size)
            err = errno
        if rc == 0:
            return
        if err != EINTR:
            raise OSError(err, os.strerror(err))


cdef class _Buffer:
    """A borrowed view of a bytes-like argument as an ``MDB_val``."""
    cdef Py_buffer view
    cdef bint held

    cdef int take(self, object obj, MDB_val *val) except -1:
        PyObject_GetBuffer(obj, &self.view, PyBUF_SIMPLE)
        self.held = True
        val.mv_size = <size_t>self.view.len
        val.mv_data = self.view.buf
        return 0

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef inline object _value(MDB_val *val, bint buffers):
    if buffers:
        return PyMemoryView_FromMemory(<char *>val.mv_data, <Py_ssize_t>val.mv_size, PyBUF_READ)
    return PyBytes_FromStringAndSize(<char *>val.mv_data, <Py_ssize_t>val.mv_size)


# Never cleared by the garbage collector before __dealloc__: the cursor must unlink itself
# from its transaction's list, which needs the transaction alive.
@cython.no_gc_clear
cdef class Cursor:
    """A position in one database of a transaction. Iterating it yields ``(key, value)``
    from its position (from the first key when not positioned) to the last."""
    cdef object txn  # kept alive while the cursor is: the pointers below point into it
    cdef PyObject **head  # the transaction's list of open cursors
    cdef unsigned long *mutations  # the transaction's count of puts and deletes
    cdef bint buffers  # the transaction's
    cdef MDB_cursor *cursor
    cdef PyObject *before  # the transaction's other open cursors
    cdef PyObject *after
    cdef MDB_val k, v
    cdef bint positioned
    cdef unsigned long seen  # txn.mutations when k and v were read

    cdef void _close(self, bint free):
        """Leave the transaction's list; ``free``: close the LMDB cursor too."""
        if self.cursor == NULL:
            return
        if free:
            mdb_cursor_close(self.cursor)
        self.cursor = NULL
        self.positioned = False
        if self.before != NULL:
            (<Cursor>self.before).after = self.after
        else:
            self.head[0] = self.after
        if self.after != NULL:
            (<Cursor>self.after).before = self.before
        self.before = self.after = NULL

    def __dealloc__(self):
        if self.txn is not None:
            self._close(True)

    cdef int _move(self, MDB_cursor_op op) except -1:
        """1 if the move landed on a key, 0 if there is none (the cursor is then not
        positioned)."""
        if self.cursor == NULL:
            raise Error("the cursor's transaction has ended")
        rc = mdb_cursor_get(self.cursor, &self.k, &self.v, op)
        self.seen = self.mutations[0]
        if rc == MDB_NOTFOUND:
            self.positioned = False
            return 0
        if rc:
            self.positioned = False
            raise _error("mdb_cursor_get", rc)
        self.positioned = True
        return 1

    cdef int _fresh(self) except -1:
        """Re-read the current item after a put or delete in the transaction (it may have
        moved in memory)."""
        if self.cursor == NULL:
            raise Error("the cursor's transaction has ended")
        if self.positioned and self.seen != self.mutations[0]:
            self._move(MDB_GET_CURRENT)
        return 0

    def first(self):
        return self._move(MDB_FIRST) == 1

    def last(self):
        return self._move(MDB_LAST) == 1

    def next(self):
        return self._move(MDB_NEXT if self.positioned else MDB_FIRST) == 1

    def prev(self):
        return self._move(MDB_PREV if self.positioned else MDB_LAST) == 1

    def set_range(self, key):
        """Move to the first key >= ``key`` (the first key when ``key`` is empty)."""
        cdef _Buffer kb = _Buffer()
        kb.take(key, &self.k)
        if self.k.mv_size == 0:
            return self._move(MDB_FIRST) == 1
        return self._move(MDB_SET_RANGE) == 1

    def set_key(self, key):
        """Move to ``key`` exactly."""
        cdef _Buffer kb = _Buffer()
        kb.take(key, &self.k)
        return self._move(MDB_SET_KEY) == 1

    def key(self):
        """The current key (empty when not positioned)."""
        self._fresh()
        if not self.positioned:
            return b""
        return _value(&self.k, self.buffers)

    def value(self):
        """The current value (empty when not positioned)."""
        self._fresh()
        if not self.positioned:
            return b""
        return _value(&self.v, self.buffers)

    def item(self):
        return self.key(), self.value()

    def iternext(self, bint keys=True, bint values=True):
        """Iterate from the current position (the first key when not positioned): keys,
        values or ``(key, value)`` pairs."""
        if not self.positioned:
            self._move(MDB_FIRST)
        return _Iterator(self, keys, values)

    def __iter__(self):
        return self.iternext()


# As Cursor: ending the transaction needs its environment alive.
@cython.no_gc_clear
cdef class Transaction:
    """A read or write transaction; as a context manager, committed when its block ends
    normally and aborted when it raises."""
    cdef object env  # kept alive while the transaction is: the pointers below point into it
    cdef MDB_txn **spare  # the environment's spare read transaction
    cdef PyObject **live  # the environment's list of live transactions
    cdef MDB_txn *txn
    cdef readonly bint write
    cdef bint buffers
    cdef PyObject *before  # the environment's other live transactions
    cdef PyObject *after
    cdef PyObject *cursors  # this transaction's open cursors, linked as the transactions
    cdef unsigned long mutations  # puts and deletes so far: cursors re-read after one

    cdef int _check(self) except -1:
        if self.txn == NULL:
            raise Error("the transaction has ended")
        return 0

    cdef void _forget(self):
        """Close the cursors (a write transaction's end frees them) and leave the
        environment's list."""
        while self.cursors != NULL:
            (<Cursor>self.cursors)._close(not self.write)
        if self.before != NULL:
            (<Transaction>self.before).after = self.after
        else:
            self.live[0] = self.after
        if self.after != NULL:
            (<Transaction>self.after).before = self.before
        self.before = self.after = NULL

    cdef void _end(self):
        """Abort, or for a read transaction keep it for the next read."""
        if self.txn == NULL:
            return
        self._forget()
        if self.write or self.spare[0] != NULL:
            mdb_txn_abort(self.txn)
        else:
            mdb_txn_reset(self.txn)
            self.spare[0] = self.txn
        self.txn = NULL

    def get(self, key, unsigned int db, default=None):
        """The value of ``key`` in ``db``, or ``default``."""
        cdef MDB_val k, v
        cdef _Buffer kb = _Buffer()
        self._check()
        kb.take(key, &k)
        rc = mdb_get(self.txn, db, &k, &v)
        if rc == MDB_NOTFOUND:
            return default
        if rc:
            raise _error("mdb_get", rc)
        return _value(&v, self.buffers)

    def put(self, key, value, unsigned int db, bint overwrite=True, bint append=False):
        """Store ``value`` at ``key``; False if the key exists and not ``overwrite``."""
        cdef MDB_val k, v
        cdef _Buffer kb = _Buffer()
        cdef _Buffer vb = _Buffer()
        cdef unsigned int flags = 0
        self._check()
        kb.take(key, &k)
        vb.take(value, &v)
        if not overwrite:
            flags |= MDB_NOOVERWRITE
        if append:
            flags |= MDB_APPEND
        rc = mdb_put(self.txn, db, &k, &v, flags)
        self.mutations += 1
        if rc == MDB_KEYEXIST:
            return False
        if rc:
            raise _error("mdb_put", rc)
        return True

    def delete(self, key, unsigned int db):
        """Remove ``key`` from ``db``; False if it was not there."""
        cdef MDB_val k
        cdef _Buffer kb = _Buffer()
        self._check()
        kb.take(key, &k)
        rc = mdb_del(self.txn, db, &k, NULL)
        self.mutations += 1
        if rc == MDB_NOTFOUND:
            return False
        if rc:
            raise _error("mdb_del", rc)
        return True

    def stat(self, unsigned int db):
        """``entries``, ``psize``, ``depth``, ``branch_pages``, ``leaf_pages``,
        ``overflow_pages`` of ``db``."""
        cdef MDB_stat st
        self._check()
        rc = mdb_stat(self.txn, db, &st)
        if rc:
            raise _error("mdb_stat", rc)
        return {
            "entries": st.ms_entries,
            "psize": st.ms_psize,
            "depth": st.ms_depth,
            "branch_pages": st.ms_branch_pages,
            "leaf_pages": st.ms_leaf_pages,
            "overflow_pages": st.ms_overflow_pages,
        }

    def cursor(self, unsigned int db):
        """A cursor over ``db``, not positioned; it ends with the transaction."""
        cdef Cursor c = Cursor.__new__(Cursor)
        self._check()
        rc = mdb_cursor_open(self.txn, db, &c.cursor)
        if rc:
            raise _error("mdb_cursor_open", rc)
        c.txn, c.head, c.mutations, c.buffers = self, &self.cursors, &self.mutations, self.buffers
        c.after = self.cursors
        if self.cursors != NULL:
            (<Cursor>self.cursors).before = <PyObject *>c
        self.cursors = <PyObject *>c
        return c

    def put_record(self, unsigned int db, bytes run_key, uint32_t seq, bytes record):
        """Add one encoded record of step ``seq`` to the journal of the run whose key is
        ``run_key`` (in ``db``, laid out in chunks): ``APPENDED``, or
        ``RECORDED_ALREADY`` / ``CORRUPT_CHUNK`` with nothing written."""
        cdef int rc
        self._check()
        if len(run_key) != SS_RUN_KEY_SIZE:
            raise ValueError(f"a run key is {SS_RUN_KEY_SIZE} bytes, got {len(run_key)}")
        if not record:
            raise ValueError("a record is never empty")
        self.mutations += 1
        status = _put_record(self.txn, db, run_key, seq, record, len(record), &rc)
        if status == _FAILED:
            raise _error("writing the journal", rc)
        return status

    def append_status(self, unsigned int journal, unsigned int leases, bytes run_key,
                      uint64_t fence, uint32_t seq):
        """What ``append_records`` would decide for an append of step ``seq`` under
        ``fence``, written nowhere: ``(APPENDED, the run's lease as bytes)``, or another
        outcome and None."""
        cdef int rc = 0
        cdef int status
        self._check()
        if len(run_key) != SS_RUN_KEY_SIZE:
            return _INVALID, None
        status = _fence_holds(self.txn, leases, run_key, fence, &rc)
        if status == _APPENDED:
            status = _recorded(self.txn, journal, run_key, seq, &rc)
        if status == _FAILED:
            raise _error("reading the journal", rc)
        if status != _APPENDED:
            return status, None
        return status, _run_value(self.txn, leases, run_key, "reading a lease")

    def append_records(self, unsigned int journal, unsigned int leases, list appends):
        """``put_record`` for each of ``appends`` (objects with ``run_key``, ``fence``,
        ``seq`` and ``record``) whose run's lease still carries its ``fence``, in order,
        with the GIL released; a list of each one's outcome (``APPENDED``,
        ``RECORDED_ALREADY``, ``CORRUPT_CHUNK``, ``RUN_NOT_FOUND``, ``LEASE_LOST``,
        ``CORRUPT_LEASE``, or ``INVALID`` for one that is not an append: a run key not of
        16 bytes, a record empty or not bytes, a fence or step number out of range). An
        LMDB error (a full map, say) raises, and the transaction must then be aborted."""
        cdef Py_ssize_t i, count = len(appends)
        cdef _Pending* pending
        cdef int* outcome
        cdef int rc = 0
        cdef bint failed = False
        cdef MDB_txn* txn
        self._check()
        txn = self.txn
        keep = []  # the bytes the C arrays point into, alive until the call returns
        pending = <_Pending*>malloc(sizeof(_Pending) * count + 1)
        outcome = <int*>malloc(sizeof(int) * count + 1)
        try:
            if pending == NULL or outcome == NULL:
                raise MemoryError()
            for i in range(count):
                outcome[i] = _pending(appends[i], &pending[i], keep)
            self.mutations += 1
            with nogil:
                for i in range(count):
                    if outcome[i] != _APPENDED:
                        continue
                    outcome[i] = _fence_holds(txn, leases, pending[i].run_key, pending[i].fence, &rc)
                    if outcome[i] == _APPENDED:
                        outcome[i] = _put_record(
                            txn, journal, pending[i].run_key, pending[i].seq,
                            pending[i].record, pending[i].n, &rc,
                        )
                    if outcome[i] == _FAILED:
                        failed = True
                        break
            if failed:
                raise _error("writing the journal", rc)
            return [outcome[i] for i in range(count)]
        finally:
            free(pending)
            free(outcome)

    def insert_run(self, unsigned int runs, unsigned int leases, unsigned int active,
                   unsigned int deploys, bytes key, bytes row, bytes lease,
                   size_t deployments, bytes last_deployment):
        """A new run (``key``) in one call: its ``row``, its ``lease`` and its place
        among the active runs, if the deployments are those the caller decided its
        version by (``deployments`` of them, the last under ``last_deployment``):
        ``APPENDED``; else ``STALE`` (the deployments changed), or ``EXISTS`` (the key
        has a row), with nothing written. An LMDB error raises, and the transaction must
        then be aborted."""
        cdef MDB_val k, v, last
        cdef MDB_stat st
        cdef MDB_cursor* cursor
        cdef int rc
        self._check()
        rc = mdb_stat(self.txn, deploys, &st)
        if rc:
            raise _error("mdb_stat", rc)
        if st.ms_entries != deployments:
            return _STALE
        if deployments:
            rc = mdb_cursor_open(self.txn, deploys, &cursor)
            if rc:
                raise _error("mdb_cursor_open", rc)
            rc = mdb_cursor_get(cursor, &last, &v, MDB_LAST)
            mdb_cursor_close(cursor)
            if rc:
                raise _error("reading the deployments", rc)
            if last.mv_size != <size_t>len(last_deployment) or memcmp(
                last.mv_data, <const char*>last_deployment, last.mv_size
            ):
                return _STALE
        k.mv_data, k.mv_size = <void*><const char*>key, len(key)
        v.mv_data, v.mv_size = <void*><const char*>row, len(row)
        self.mutations += 1
        rc = mdb_put(self.txn, runs, &k, &v, MDB_NOOVERWRITE)
        if rc == MDB_KEYEXIST:
            return _EXISTS
        if rc:
            raise _error("mdb_put", rc)
        v.mv_data, v.mv_size = <void*><const char*>lease, len(lease)
        rc = mdb_put(self.txn, leases, &k, &v, 0)
        if rc:
            raise _error("mdb_put", rc)
        v.mv_data, v.mv_size = k.mv_data, 0  # an empty value (any valid pointer)
        rc = mdb_put(self.txn, active, &k, &v, 0)
        if rc:
            raise _error("mdb_put", rc)
        return _APPENDED

    def fenced_value(self, unsigned int leases, unsigned int db, bytes run_key,
                     uint64_t fence):
        """``(APPENDED, the value of run_key in db)`` when the run's lease carries
        ``fence``; else ``(RUN_NOT_FOUND | LEASE_LOST | CORRUPT_LEASE, None)``, or
        ``(APPENDED, None)`` when ``db`` has no such key."""
        cdef int rc = 0
        cdef int status
        self._check()
        if len(run_key) != SS_RUN_KEY_SIZE:
            raise ValueError(f"a run key is {SS_RUN_KEY_SIZE} bytes, got {len(run_key)}")
        status = _fence_holds(self.txn, leases, run_key, fence, &rc)
        if status == _FAILED:
            raise _error("reading a lease", rc)
        if status != _APPENDED:
            return status, None
        return status, _run_value(self.txn, db, run_key, "mdb_get")

    def end_run(self, unsigned int runs, unsigned int leases, unsigned int active,
                unsigned int retain, bytes key, bytes row, bytes lease, bytes filed):
        """A finished run (``key``) in one call: its ``row`` and ``lease`` written, its
        place among the active runs removed, and ``filed + key`` put in ``retain``. An
        LMDB error raises, and the transaction must then be aborted."""
        cdef MDB_val k, v
        cdef int rc
        self._check()
        k.mv_data, k.mv_size = <void*><const char*>key, len(key)
        v.mv_data, v.mv_size = <void*><const char*>row, len(row)
        self.mutations += 1
        rc = mdb_put(self.txn, runs, &k, &v, 0)
        if rc:
            raise _error("mdb_put", rc)
        v.mv_data, v.mv_size = <void*><const char*>lease, len(lease)
        rc = mdb_put(self.txn, leases, &k, &v, 0)
        if rc:
            raise _error("mdb_put", rc)
        rc = mdb_del(self.txn, active, &k, NULL)
        if rc and rc != MDB_NOTFOUND:
            raise _error("mdb_del", rc)
        filed_key = filed + key
        k.mv_data, k.mv_size = <void*><const char*>filed_key, len(filed_key)
        v.mv_data, v.mv_size = k.mv_data, 0  # an empty value (any valid pointer)
        rc = mdb_put(self.txn, retain, &k, &v, 0)
        if rc:
            raise _error("mdb_put", rc)

    def commit(self):
        """Commit (a write transaction: to the disk, as the environment's sync says)."""
        cdef int rc
        cdef MDB_txn *txn
        cdef Environment env
        self._check()
        if not self.write:
            self._end()
            return
        self._forget()
        txn, self.txn = self.txn, NULL
        env = <Environment>self.env
        env.busy += 1
        with nogil:
            rc = mdb_txn_commit(txn)  # frees txn, whatever it returns
        env.busy -= 1
        if rc:
            raise _error("mdb_txn_commit", rc)

    def abort(self):
        """Drop everything the transaction wrote; aborting an ended one does nothing."""
        self._end()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.txn == NULL:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __dealloc__(self):
        self._end()


cdef class Environment:
    """One open LMDB environment (a directory with ``data.mdb`` and ``lock.mdb``)."""
    cdef MDB_env *env
    cdef MDB_txn *spare  # a reset read transaction, renewed by the next read
    cdef readonly bint readonly
    # The transactions not yet ended, linked through borrowed references: ended by close().
    cdef PyObject *live
    # Calls under way without the GIL that use the environment: close() refuses meanwhile.
    cdef readonly int busy

    cdef int _check(self) except -1:
        if self.env == NULL:
            raise Error("the environment is closed")
        return 0

    def open_db(self, bytes name, bint create=True):
        """The handle of the named database, created if missing when ``create`` (and the
        environment is writable)."""
        cdef MDB_txn *txn
        cdef MDB_dbi dbi
        cdef int rc
        cdef const char *cname = name
        cdef unsigned int flags = MDB_RDONLY if self.readonly or not create else 0
        cdef const char *what = "mdb_txn_begin"
        self._check()
        self.busy += 1
        with nogil:
            rc = mdb_txn_begin(self.env, NULL, flags, &txn)
            if not rc:
                what = "mdb_dbi_open"
                rc = mdb_dbi_open(txn, cname, 0 if flags else MDB_CREATE, &dbi)
                if rc:
                    mdb_txn_abort(txn)
                else:
                    what = "mdb_txn_commit"
                    rc = mdb_txn_commit(txn)  # a read transaction's commit keeps the handle
        self.busy -= 1
        if rc:
            raise _error(what.decode(), rc)
        return dbi

    def begin(self, bint write=False, bint buffers=False):
        """A transaction: ``write`` takes LMDB's writer lock (waiting for a writer in
        another process, the GIL released meanwhile)."""
        cdef Transaction t = Transaction.__new__(Transaction)
        cdef MDB_txn *txn = NULL
        cdef int rc
        self._check()
        if write:
            if self.readonly:
                raise ReadonlyError("mdb_txn_begin: the environment is read-only", EACCES)
            self.busy += 1
            with nogil:
                rc = mdb_txn_begin(self.env, NULL, 0, &txn)
            self.busy -= 1
        elif self.spare != NULL:
            txn, self.spare = self.spare, NULL
            rc = mdb_txn_renew(txn)  # keeps its slot in the reader table: no lock taken
            if rc:
                mdb_txn_abort(txn)
        else:
            self.busy += 1
            with nogil:  # may wait for the reader table's lock, shared across processes
                rc = mdb_txn_begin(self.env, NULL, MDB_RDONLY, &txn)
            self.busy -= 1
        if rc:
            raise _error("mdb_txn_begin", rc)
        t.env, t.spare, t.live = self, &self.spare, &self.live
        t.txn, t.write, t.buffers = txn, write, buffers and not write
        t.after = self.live
        if self.live != NULL:
            (<Transaction>self.live).before = <PyObject *>t
        self.live = <PyObject *>t
        return t

    def commit_append(self, unsigned int journal, unsigned int leases, object append):
        """One append of ``Transaction.append_records`` in a write transaction of its
        own, committed: the begin, the fence check, the put and the commit in one call
        without the GIL. Its outcome as append_records gives it, with nothing written
        unless ``APPENDED``; an LMDB error (a full map, say) raises, nothing written."""
        cdef _Pending p
        cdef MDB_txn *txn
        cdef int rc = 0
        cdef int status
        cdef const char *what = "mdb_txn_begin"
        self._check()
        if self.readonly:
            raise ReadonlyError("mdb_txn_begin: the environment is read-only", EACCES)
        keep = []  # the bytes p points into
        status = _pending(append, &p, keep)
        if status != _APPENDED:
            return status
        self.busy += 1
        with nogil:
            rc = mdb_txn_begin(self.env, NULL, 0, &txn)
            if not rc:
                status = _fence_holds(txn, leases, p.run_key, p.fence, &rc)
                if status == _APPENDED:
                    status = _put_record(txn, journal, p.run_key, p.seq, p.record, p.n, &rc)
                if status == _APPENDED:
                    what = "mdb_txn_commit"
                    rc = mdb_txn_commit(txn)  # frees txn, whatever it returns
                else:
                    what = "writing the journal"
                    mdb_txn_abort(txn)
        self.busy -= 1
        if rc:
            raise _error(what.decode(), rc)
        return status

    def set_mapsize(self, size_t size):
        """Set the map's size; 0 adopts the size another process set. No transaction of
        this process may be open. When the larger map cannot be mapped (no address space
        left, say) LMDB has unmapped the old one: the environment is closed, and the
        error says so."""
        cdef int rc
        self._check()
        if self.live != NULL or self.busy:
            raise Error("mdb_env_set_mapsize: a transaction is open", EINVAL)
        self._drop_spare()
        self.busy += 1
        with nogil:
            rc = mdb_env_set_mapsize(self.env, size)
        self.busy -= 1
        if rc:
            error = _error("mdb_env_set_mapsize", rc)
            if rc != EINVAL:  # EINVAL: refused before the old map was touched
                mdb_env_close(self.env)
                self.env = NULL
                error.args = (f"{error.args[0]} (the environment is closed)",)
            raise error

    def info(self):
        """``map_size``, ``last_pgno``, ``last_txnid``, ``max_readers``, ``num_readers``."""
        cdef MDB_envinfo info
        self._check()
        rc = mdb_env_info(self.env, &info)
        if rc:
            raise _error("mdb_env_info", rc)
        return {
            "map_size": info.me_mapsize,
            "last_pgno": info.me_last_pgno,
            "last_txnid": info.me_last_txnid,
            "max_readers": info.me_maxreaders,
            "num_readers": info.me_numreaders,
        }

    def sync(self, bint force=True):
        """Flush the data file to the disk."""
        cdef int rc
        self._check()
        self.busy += 1
        with nogil:
            rc = mdb_env_sync(self.env, force)
        self.busy -= 1
        if rc:
            raise _error("mdb_env_sync", rc)

    cdef void _drop_spare(self):
        if self.spare != NULL:
            mdb_txn_abort(self.spare)
            self.spare = NULL

    def close(self):
        """Abort the transactions still open, then close; closing twice does nothing.
        Refused while another thread is in a call that released the GIL."""
        cdef MDB_env *env = self.env
        if env == NULL:
            return
        if self.busy:
            raise Error("the environment is in use by another thread", EINVAL)
        while self.live != NULL:
            (<Transaction>self.live)._end()
        self._drop_spare()
        self.env = NULL
        with nogil:
            mdb_env_close(env)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.env != NULL:
            if self.spare != NULL:
                mdb_txn_abort(self.spare)
            mdb_env_close(self.env)


def open(
    str path,
    size_t map_size=10485760,
    unsigned int max_dbs=0,
    bint sync=True,
    bint metasync=True,
    bint readahead=True,
    unsigned int max_readers=126,
    unsigned int mode=0o755,
    bint readonly=False,
    bint writemap=False,
    bint lock=True,
):
    """Open the environment in directory ``path`` (which must exist). ``writemap``: write
    pages through a writable map (no write system calls; LMDB grows the data file to the
    map size with ftruncate, so a write to a block the disk cannot supply is a SIGBUS:
    allocate the file first). ``lock=False``: without the lock file's reader table, for
    reading a store this process may not write (its lock file included)."""
    cdef Environment e = Environment.__new__(Environment)
    cdef MDB_env *env
    cdef int rc
    cdef bytes bpath = path.encode()
    cdef const char *cpath = bpath
    cdef unsigned int flags = MDB_NOTLS  # read transactions may move between threads
    if not sync:
        flags |= MDB_NOSYNC
    if not metasync:
        flags |= MDB_NOMETASYNC
    if not readahead:
        flags |= MDB_NORDAHEAD
    if readonly:
        flags |= MDB_RDONLY
    if writemap:
        flags |= MDB_WRITEMAP
    if not lock:
        flags |= MDB_NOLOCK
    rc = mdb_env_create(&env)
    if rc:
        raise _error("mdb_env_create", rc)
    rc = mdb_env_set_mapsize(env, map_size)
    if not rc:
        rc = mdb_env_set_maxdbs(env, max_dbs)
    if not rc:
        rc = mdb_env_set_maxreaders(env, max_readers)
    if not rc:
        with nogil:
            rc = mdb_env_open(env, cpath, flags, mode)
    if rc:
        mdb_env_close(env)
        raise _error(path, rc)
    e.env, e.readonly = env, readonly
    return e


cdef class _Iterator:
    cdef Cursor cursor
    cdef bint keys, values, started

    def __cinit__(self, Cursor cursor, bint keys, bint values):
        self.cursor, self.keys, self.values = cursor, keys, values

    def __iter__(self):
        return self

    def __next__(self):
        if self.started:
            self.cursor._move(MDB_NEXT)
        self.started = True
        if not self.cursor.positioned:
            raise StopIteration
        if not self.values:
            return self.cursor.key()
        if not self.keys:
            return self.cursor.value()
        return self.cursor.item()
