/*
 * The data API from C: serializable transactions (a conflict between two
 * transactions on one key), named databases, *_in reads and writes, and
 * cursors, with their error paths (null handles, a removed database).
 *
 * One master site in one process; its transport drops every message (it
 * has no peers). Prints "N passed, N failed" and exits non-zero on failure.
 */
#include "dbrep.h"

#include <stdio.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",   \
                    __FILE__, __LINE__, #cond, dbrep_last_error());          \
        }                                                                    \
    } while (0)

#define CHECK_RC(call, want)                                                 \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ == (want)) {                                                 \
            passed++;                                                        \
        } else {                                                             \
            failed++;                                                        \
            fprintf(stderr, "%s:%d: %s returned %d (%s: %s), want %d (%s)\n", \
                    __FILE__, __LINE__, #call, rc_, dbrep_strerror(rc_),     \
                    dbrep_last_error(), (want), dbrep_strerror(want));       \
        }                                                                    \
    } while (0)

#define B(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static int drop_send(void *ctx, const uint8_t *control, size_t control_len,
                     const uint8_t *rec, size_t rec_len, const dbrep_lsn *lsn,
                     dbrep_eid eid, uint32_t flags) {
    (void)ctx, (void)control, (void)control_len, (void)rec, (void)rec_len;
    (void)lsn, (void)eid, (void)flags;
    return 0;
}

static int buf_is(const dbrep_buf *b, const char *s) {
    return b->len == strlen(s) && memcmp(b->data, s, b->len) == 0;
}

static dbrep_env *master(void) {
    dbrep_env *env = NULL;
    CHECK_RC(dbrep_env_open_in_memory(NULL, &env), DBREP_OK);
    CHECK_RC(dbrep_rep_set_transport(env, 1, drop_send, NULL), DBREP_OK);
    CHECK_RC(dbrep_rep_set_nsites(env, 1), DBREP_OK);
    CHECK_RC(dbrep_rep_start(env, NULL, 0, DBREP_MASTER), DBREP_OK);
    return env;
}

/* Two transactions read the same key and both write it: the second commit
 * fails with DBREP_LOCK_DEADLOCK and writes nothing. */
static void test_conflict(dbrep_env *env) {
    dbrep_txn *t1, *t2;
    dbrep_buf v;
    CHECK_RC(dbrep_txn_begin(env, &t1), DBREP_OK);
    CHECK_RC(dbrep_txn_begin(env, &t2), DBREP_OK);
    CHECK_RC(dbrep_txn_get(t1, B("counter"), &v), DBREP_NOTFOUND);
    CHECK_RC(dbrep_txn_get(t2, B("counter"), &v), DBREP_NOTFOUND);
    CHECK_RC(dbrep_txn_put(t1, B("counter"), B("1")), DBREP_OK);
    CHECK_RC(dbrep_txn_put(t2, B("counter"), B("1")), DBREP_OK);
    /* Own writes are read back. */
    CHECK_RC(dbrep_txn_get(t1, B("counter"), &v), DBREP_OK);
    CHECK(buf_is(&v, "1"));
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_txn_commit(t1, NULL), DBREP_OK);
    CHECK_RC(dbrep_txn_commit(t2, NULL), DBREP_LOCK_DEADLOCK);

    /* The retry sees the first commit. */
    CHECK_RC(dbrep_txn_begin(env, &t2), DBREP_OK);
    CHECK_RC(dbrep_txn_get(t2, B("counter"), &v), DBREP_OK);
    CHECK(buf_is(&v, "1"));
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_txn_put(t2, B("counter"), B("2")), DBREP_OK);
    CHECK_RC(dbrep_txn_commit(t2, NULL), DBREP_OK);
    CHECK_RC(dbrep_get(env, B("counter"), DBREP_READ_STALE, 0, &v), DBREP_OK);
    CHECK(buf_is(&v, "2"));
    dbrep_buf_free(&v);
}

static void test_databases(dbrep_env *env) {
    dbrep_db *db = NULL, *again = NULL;
    dbrep_buf v, names;
    size_t n = 99;

    CHECK_RC(dbrep_db_open(env, "users", &db), DBREP_NO_DATABASE);
    CHECK(db == NULL);
    CHECK_RC(dbrep_db_create(env, "users", &db), DBREP_OK);
    CHECK_RC(dbrep_db_create(env, "users", &again), DBREP_EINVAL);
    CHECK_RC(dbrep_db_open_or_create(env, "users", &again), DBREP_OK);
    dbrep_db_free(again);
    CHECK_RC(dbrep_db_open(env, "users", &again), DBREP_OK);
    CHECK_RC(dbrep_db_list(env, &names, &n), DBREP_OK);
    CHECK(n == 1 && names.len == 6 && memcmp(names.data, "users", 6) == 0);
    dbrep_buf_free(&names);

    dbrep_txn *t;
    CHECK_RC(dbrep_txn_begin(env, &t), DBREP_OK);
    CHECK_RC(dbrep_txn_put_in(t, db, B("ann"), B("1")), DBREP_OK);
    CHECK_RC(dbrep_txn_put_in(t, db, B("bob"), B("2")), DBREP_OK);
    CHECK_RC(dbrep_txn_put_in(t, db, B("cid"), B("3")), DBREP_OK);
    CHECK_RC(dbrep_txn_put_in(t, db, B("dan"), B("4")), DBREP_OK);
    CHECK_RC(dbrep_txn_delete_in(t, db, B("dan")), DBREP_OK);
    CHECK_RC(dbrep_txn_get_in(t, db, B("dan"), &v), DBREP_NOTFOUND);
    CHECK_RC(dbrep_txn_get_in(t, db, B("ann"), &v), DBREP_OK);
    CHECK(buf_is(&v, "1"));
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_txn_put_in(t, NULL, B("x"), B("y")), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_commit(t, NULL), DBREP_OK);

    CHECK_RC(dbrep_get_in(env, db, B("bob"), &v), DBREP_OK);
    CHECK(buf_is(&v, "2"));
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_get_in(env, again, B("zed"), &v), DBREP_NOTFOUND);
    dbrep_db_free(again);
    /* The default database does not hold them. */
    CHECK_RC(dbrep_get(env, B("bob"), DBREP_READ_STALE, 0, &v), DBREP_NOTFOUND);

    /* Cursors, both directions and seeks. */
    dbrep_cursor *c = NULL;
    dbrep_buf k;
    CHECK_RC(dbrep_cursor_open(env, db, 99, 0, &c), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_open(env, NULL, DBREP_READ_STALE, 0, &c), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_open(env, db, DBREP_READ_LINEARIZABLE, 5000000, &c), DBREP_OK);
    CHECK_RC(dbrep_cursor_first(c, &k, &v), DBREP_OK);
    CHECK(buf_is(&k, "ann") && buf_is(&v, "1"));
    dbrep_buf_free(&k);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_cursor_next(c, &k, &v), DBREP_OK);
    CHECK(buf_is(&k, "bob") && buf_is(&v, "2"));
    dbrep_buf_free(&k);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_cursor_last(c, &k, &v), DBREP_OK);
    CHECK(buf_is(&k, "cid"));
    dbrep_buf_free(&k);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_cursor_next(c, &k, &v), DBREP_NOTFOUND);
    CHECK(k.data == NULL && v.data == NULL);
    CHECK_RC(dbrep_cursor_prev(c, &k, &v), DBREP_OK);
    CHECK(buf_is(&k, "bob"));
    dbrep_buf_free(&k);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_cursor_seek(c, B("b"), &k, &v), DBREP_OK);
    CHECK(buf_is(&k, "bob"));
    dbrep_buf_free(&k);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_cursor_seek(c, B("d"), &k, &v), DBREP_NOTFOUND);
    CHECK_RC(dbrep_cursor_seek_back(c, B("c"), &k, &v), DBREP_OK);
    CHECK(buf_is(&k, "bob"));
    dbrep_buf_free(&k);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_cursor_seek_back(c, B("a"), &k, &v), DBREP_NOTFOUND);
    CHECK_RC(dbrep_cursor_first(c, NULL, &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_first(NULL, &k, &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_close(c), DBREP_OK);
    CHECK_RC(dbrep_cursor_close(NULL), DBREP_EINVAL);

    /* A transaction writing a database removed before it commits. */
    CHECK_RC(dbrep_txn_begin(env, &t), DBREP_OK);
    CHECK_RC(dbrep_txn_put_in(t, db, B("eve"), B("5")), DBREP_OK);
    CHECK_RC(dbrep_db_remove(env, "users"), DBREP_OK);
    CHECK_RC(dbrep_txn_commit(t, NULL), DBREP_NO_DATABASE);
    CHECK_RC(dbrep_get_in(env, db, B("bob"), &v), DBREP_NO_DATABASE);
    CHECK_RC(dbrep_cursor_open(env, db, DBREP_READ_STALE, 0, &c), DBREP_NO_DATABASE);
    CHECK(c == NULL);
    CHECK_RC(dbrep_db_remove(env, "users"), DBREP_NO_DATABASE);
    CHECK_RC(dbrep_db_open(env, "users", &again), DBREP_NO_DATABASE);
    CHECK_RC(dbrep_db_list(env, &names, &n), DBREP_OK);
    CHECK(n == 0 && names.len == 0);
    dbrep_buf_free(&names);
    dbrep_db_free(db);
}

static void test_null_handles(dbrep_env *env) {
    dbrep_db *db = NULL;
    dbrep_cursor *c = NULL;
    dbrep_buf v;
    size_t n;
    CHECK_RC(dbrep_db_create(NULL, "x", &db), DBREP_EINVAL);
    CHECK_RC(dbrep_db_create(env, NULL, &db), DBREP_EINVAL);
    CHECK_RC(dbrep_db_create(env, "x", NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_db_open(NULL, "x", &db), DBREP_EINVAL);
    CHECK_RC(dbrep_db_open_or_create(NULL, "x", &db), DBREP_EINVAL);
    CHECK_RC(dbrep_db_remove(NULL, "x"), DBREP_EINVAL);
    CHECK_RC(dbrep_db_list(NULL, &v, &n), DBREP_EINVAL);
    CHECK_RC(dbrep_db_list(env, NULL, &n), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_put_in(NULL, NULL, B("k"), B("v")), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_delete_in(NULL, NULL, B("k")), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_get_in(NULL, NULL, B("k"), &v), DBREP_EINVAL);
    CHECK_RC(dbrep_get_in(env, NULL, B("k"), &v), DBREP_EINVAL);
    CHECK_RC(dbrep_get_in(NULL, NULL, B("k"), &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_open(NULL, NULL, DBREP_READ_STALE, 0, &c), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_last(NULL, &v, &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_next(NULL, &v, &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_prev(NULL, &v, &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_seek(NULL, B("k"), &v, &v), DBREP_EINVAL);
    CHECK_RC(dbrep_cursor_seek_back(NULL, B("k"), &v, &v), DBREP_EINVAL);
    dbrep_db_free(NULL);
}

int main(void) {
    dbrep_env *env = master();
    test_conflict(env);
    test_databases(env);
    test_null_handles(env);
    CHECK_RC(dbrep_env_close(env), DBREP_OK);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
