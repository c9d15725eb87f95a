/* How many pages one write transaction dirties, and how long its sync commit takes, for
 * one record put under its own key (the goal's raw baseline) against the journal's chunk
 * rewrite (read the chunk, put it back one record longer: what put_record does). Built
 * against the vendored LMDB source, whose transaction's dirty list it reads:
 *
 *     gcc -O2 -w -Iext/lmdb -o build/dirty_pages benchmarks/diagnostics/dirty_pages.c ext/lmdb/midl.c -lpthread
 *     for layout in key chunk; do d=$(mktemp -d); build/dirty_pages $d $layout; rm -r $d; done
 *
 * 1,000 transactions of 44-byte records (the size of benchmarks/workloads.sample_record),
 * chunks of CHUNK_BYTES (1,984) in groups of 64 steps, as surestep.store.lmdb keys them;
 * the counts skip the first 200 transactions (the tree's first leaves). */
#include "mdb.c"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N = 1000, RECORD = 44, CHUNK = 1984, SKIP = 200 };

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static int by_page(const void* a, const void* b) {
    pgno_t x = *(const pgno_t*)a, y = *(const pgno_t*)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
    if (argc != 3 || (strcmp(argv[2], "key") && strcmp(argv[2], "chunk"))) {
        fprintf(stderr, "usage: %s DIR key|chunk\n", argv[0]);
        return 2;
    }
    int chunked = !strcmp(argv[2], "chunk");
    MDB_env* env;
    MDB_txn* txn;
    MDB_dbi db;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    mdb_env_set_mapsize(env, 1 << 30);
    if (mdb_env_open(env, argv[1], MDB_WRITEMAP | MDB_NORDAHEAD, 0600)) return 1;
    unsigned char key[21], value[CHUNK];
    memset(key, 7, 16);  /* a run key */
    memset(value, 'x', sizeof value);
    size_t chunk_len = 0;
    int chunk = 0, group = -1;
    double pages = 0, runs = 0, commit[N];
    for (int s = 0; s < N; s++) {
        MDB_val k = {0, key}, v = {RECORD, value}, old;
        mdb_txn_begin(env, NULL, 0, &txn);
        mdb_dbi_open(txn, "journal", MDB_CREATE, &db);
        if (!chunked) {  /* big-endian u32 seq */
            key[16] = s >> 24, key[17] = s >> 16, key[18] = s >> 8, key[19] = s;
            k.mv_size = 20;
        } else {  /* big-endian u32 (seq >> 6) + u8 (255 - chunk) */
            int g = s >> 6;
            if (g != group) group = g, chunk = 0, chunk_len = 0;
            if (chunk_len + RECORD > CHUNK) chunk++, chunk_len = 0;
            key[16] = g >> 24, key[17] = g >> 16, key[18] = g >> 8, key[19] = g;
            key[20] = 255 - chunk;
            k.mv_size = 21;
            mdb_get(txn, db, &k, &old);
            chunk_len += RECORD;
            v.mv_size = chunk_len;
        }
        if (mdb_put(txn, db, &k, &v, 0)) return 1;
        /* The dirty pages before the commit (it adds the free list's and the meta page). */
        MDB_ID2L dirty = txn->mt_u.dirty_list;
        int n = (int)dirty[0].mid;
        pgno_t p[64];
        for (int i = 0; i < n && i < 64; i++) p[i] = dirty[i + 1].mid;
        qsort(p, n, sizeof *p, by_page);
        int contiguous = n > 0;
        for (int i = 1; i < n; i++) contiguous += p[i] != p[i - 1] + 1;
        if (s >= SKIP) pages += n, runs += contiguous;
        double started = now_us();
        if (mdb_txn_commit(txn)) return 1;
        commit[s] = now_us() - started;
    }
    qsort(commit, N, sizeof *commit, by_value);
    printf("%s: %.2f dirty pages per transaction in %.2f contiguous runs; sync commit %.1f us (median)\n",
           argv[2], pages / (N - SKIP), runs / (N - SKIP), commit[N / 2]);
    mdb_env_close(env);
    return 0;
}
