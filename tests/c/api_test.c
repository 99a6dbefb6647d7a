/*
 * Exercises every function in dbrep.h at least once, with its error paths:
 * null handles and pointers, bad kinds and flags, garbage messages, calls in
 * the wrong role or order, and calls on a shut-down handle.
 *
 * Sites run in one thread over an in-memory mailbox; elections use the
 * non-blocking form, so nothing here needs a second thread.
 *
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "dbrep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- an in-memory mailbox between up to MAXSITES sites ---------------- */

#define MAXSITES 3

typedef struct msg {
    struct msg *next;
    int from, to;
    uint8_t *control, *rec;
    size_t control_len, rec_len;
} msg;

typedef struct {
    dbrep_env *env[MAXSITES + 1]; /* by eid, from 1 */
    int up[MAXSITES + 1];         /* 0: messages to and from it are dropped */
    int nsites;
    msg *head, *tail;
} hub;

typedef struct {
    hub *h;
    int eid;
} site_ctx;

static uint8_t *copy(const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (n)
        memcpy(c, p, n);
    return c;
}

static void enqueue(hub *h, int from, int to, const uint8_t *control,
                    size_t control_len, const uint8_t *rec, size_t rec_len) {
    msg *m = calloc(1, sizeof *m);
    m->from = from;
    m->to = to;
    m->control = copy(control, control_len);
    m->control_len = control_len;
    m->rec = copy(rec, rec_len);
    m->rec_len = rec_len;
    if (h->tail)
        h->tail->next = m;
    else
        h->head = m;
    h->tail = m;
}

static int hub_send(void *ctx, const uint8_t *control, size_t control_len,
                    const uint8_t *rec, size_t rec_len, const dbrep_lsn *lsn,
                    dbrep_eid eid, uint32_t flags) {
    site_ctx *s = ctx;
    (void)lsn;
    (void)flags;
    if (!s) /* a lone site: nobody to send to */
        return 0;
    if (!s->h->up[s->eid])
        return 1;
    for (int to = 1; to <= s->h->nsites; to++)
        if (to != s->eid && (eid == DBREP_EID_BROADCAST || eid == to))
            enqueue(s->h, s->eid, to, control, control_len, rec, rec_len);
    return 0;
}

static void free_msg(msg *m) {
    free(m->control);
    free(m->rec);
    free(m);
}

static int newsites;
static char last_cdata[32];

/* Delivers until the mailbox is empty; returns how many were delivered. */
static int deliver(hub *h) {
    int n = 0;
    while (h->head) {
        msg *m = h->head;
        h->head = m->next;
        if (!h->head)
            h->tail = NULL;
        if (h->up[m->to] && h->up[m->from]) {
            dbrep_eid eid = 0;
            dbrep_lsn lsn;
            dbrep_buf cdata;
            int rc = dbrep_rep_process_message(h->env[m->to], m->control,
                                               m->control_len, m->rec,
                                               m->rec_len, m->from, &eid,
                                               &lsn, &cdata);
            if (rc == DBREP_NEWSITE) {
                newsites++;
                CHECK(eid == m->from);
                size_t k = cdata.len < sizeof last_cdata - 1 ? cdata.len : sizeof last_cdata - 1;
                memcpy(last_cdata, cdata.data, k);
                last_cdata[k] = 0;
                dbrep_buf_free(&cdata);
                CHECK(cdata.data == NULL && cdata.len == 0);
            } else {
                CHECK(cdata.len == 0);
            }
            CHECK(rc != DBREP_DUPMASTER && rc != DBREP_JOIN_FAILURE &&
                  rc != DBREP_MALFORMED);
            n++;
        }
        free_msg(m);
    }
    return n;
}

static void hub_free(hub *h) {
    while (h->head) {
        msg *m = h->head;
        h->head = m->next;
        free_msg(m);
    }
    h->tail = NULL;
}

/* ---- events ----------------------------------------------------------- */

static int events[128];
static dbrep_eid last_newmaster = -100;

static void on_event(void *ctx, int event, const dbrep_event_info *info) {
    (void)ctx;
    if (event >= 0 && event < 128)
        events[event]++;
    if (event == DBREP_EVENT_REP_NEWMASTER)
        last_newmaster = info->eid;
}

/* ---- the tests ---------------------------------------------------------- */

static const int ALL_CODES[] = {
    DBREP_OK, DBREP_EINVAL, DBREP_HOLDELECTION, DBREP_DUPMASTER, DBREP_IGNORE,
    DBREP_ISPERM, DBREP_JOIN_FAILURE, DBREP_LEASE_EXPIRED, DBREP_LOCKOUT,
    DBREP_NEWSITE, DBREP_NOTPERM, DBREP_UNAVAIL, DBREP_RUNRECOVERY,
    DBREP_TIMEOUT, DBREP_NOTFOUND, DBREP_KEYEMPTY, DBREP_NEWMASTER,
    DBREP_MALFORMED, DBREP_IO, DBREP_CORRUPT, DBREP_LIMIT, DBREP_IN_PROGRESS,
    DBREP_CLOSED, DBREP_LOG_NOTFOUND,
};

static void test_strerror(void) {
    const char *unknown = dbrep_strerror(12345);
    CHECK(unknown != NULL && strstr(unknown, "unknown") != NULL);
    for (size_t i = 0; i < sizeof ALL_CODES / sizeof ALL_CODES[0]; i++) {
        const char *s = dbrep_strerror(ALL_CODES[i]);
        CHECK(s != NULL && strcmp(s, unknown) != 0 && strlen(s) > 3);
        for (size_t j = 0; j < i; j++)
            CHECK(ALL_CODES[i] != ALL_CODES[j]);
    }
    CHECK(dbrep_last_error() != NULL);

    /* A port is a rename: the codes Berkeley DB 5.3 has keep its values. */
    CHECK(DBREP_DUPMASTER == -30985 && DBREP_HOLDELECTION == -30983 && DBREP_IGNORE == -30982);
    CHECK(DBREP_ISPERM == -30981 && DBREP_JOIN_FAILURE == -30980 && DBREP_LEASE_EXPIRED == -30979);
    CHECK(DBREP_LOCKOUT == -30978 && DBREP_NEWSITE == -30977 && DBREP_NOTPERM == -30976);
    CHECK(DBREP_UNAVAIL == -30975 && DBREP_RUNRECOVERY == -30973 && DBREP_TIMEOUT == -30971);
    CHECK(DBREP_NOTFOUND == -30988 && DBREP_KEYEMPTY == -30995 && DBREP_EINVAL == 22);
    CHECK(DBREP_CLIENT == 0x1 && DBREP_MASTER == 0x2 && DBREP_EID_BROADCAST == -1);
    CHECK(DBREP_SEND_PERMANENT == 0x4 && DBREP_CONF_LEASE == 0x80 && DBREP_ACKS_QUORUM == 7);
    CHECK(DBREP_EVENT_REP_ELECTED == 8 && DBREP_EVENT_REP_NEWMASTER == 15);
}

/* Every handle-taking call, given a null handle, says EINVAL. */
static void test_null_handles(void) {
    uint32_t u;
    uint64_t q, q2;
    int i;
    dbrep_eid e;
    dbrep_rep_stat_t st;
    dbrep_buf b;
    dbrep_lsn l;
    dbrep_txn *t;
    uint8_t token[DBREP_TOKEN_SIZE] = {0};

    CHECK_RC(dbrep_open_config_init(NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_env_open("/tmp", NULL, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_env_open_in_memory(NULL, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_env_shutdown(NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_env_close(NULL), DBREP_EINVAL);
    CHECK(strstr(dbrep_last_error(), "null") != NULL);
    CHECK_RC(dbrep_rep_set_transport(NULL, 1, hub_send, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_set_event_notify(NULL, on_event, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_priority(NULL, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_priority(NULL, &u), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_nsites(NULL, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_nsites(NULL, &u), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_timeout(NULL, DBREP_ACK_TIMEOUT, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_timeout(NULL, DBREP_ACK_TIMEOUT, &q), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_config(NULL, DBREP_CONF_BULK, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_config(NULL, DBREP_CONF_BULK, &i), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_limit(NULL, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_limit(NULL, &q), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_ack_policy(NULL, DBREP_ACKS_ONE), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_clockskew(NULL, 1, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_clockskew(NULL, &u, &u), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_request(NULL, 1, 2), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_request(NULL, &q, &q2), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_start(NULL, NULL, 0, DBREP_CLIENT), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_elect(NULL, 0, 0, 0, &e), DBREP_EINVAL);
    CHECK(e == DBREP_EID_INVALID);
    CHECK_RC(dbrep_rep_elect_nowait(NULL, 0, 0, 0, &e), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_process_message(NULL, NULL, 0, NULL, 0, 1, &e, &l, &b), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_tick(NULL, &q), DBREP_EINVAL);
    CHECK(q == DBREP_NO_DEADLINE);
    CHECK_RC(dbrep_rep_sync(NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_flush(NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_stat(NULL, &st, 0), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_begin(NULL, &t), DBREP_EINVAL);
    CHECK(t == NULL);
    CHECK_RC(dbrep_txn_put(NULL, (const uint8_t *)"k", 1, NULL, 0), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_delete(NULL, (const uint8_t *)"k", 1), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_get(NULL, (const uint8_t *)"k", 1, &b), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_commit(NULL, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_abort(NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_get(NULL, (const uint8_t *)"k", 1, DBREP_READ_STALE, 0, &b), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_applied(NULL, token, sizeof token, 0), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_checkpoint(NULL, &l), DBREP_EINVAL);
    CHECK_RC(dbrep_log_flush(NULL), DBREP_EINVAL);
    dbrep_buf_free(NULL); /* a no-op */
}

static int has(dbrep_env *env, int level, const char *k, const char *v);

static void test_open_on_disk(void) {
    char dir[] = "/tmp/dbrep-c-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    dbrep_open_config cfg;
    CHECK_RC(dbrep_open_config_init(&cfg), DBREP_OK);
    CHECK(cfg.durability == DBREP_DURABILITY_SYNC);
    dbrep_env *env = (dbrep_env *)&cfg; /* overwritten with null on failure */
    CHECK_RC(dbrep_env_open(NULL, &cfg, &env), DBREP_EINVAL);
    CHECK(env == NULL);
    CHECK_RC(dbrep_env_open("/tmp/\xff\xfe", &cfg, &env), DBREP_EINVAL);
    CHECK(strstr(dbrep_last_error(), "UTF-8") != NULL);
    CHECK_RC(dbrep_env_open("/dev/null/not-a-dir", &cfg, &env), DBREP_IO);
    CHECK(env == NULL);
    cfg.durability = 99;
    CHECK_RC(dbrep_env_open(dir, &cfg, &env), DBREP_EINVAL);
    cfg.durability = DBREP_DURABILITY_WRITE_NOSYNC;
    cfg.use_seed = 1;
    cfg.seed = 7;
    CHECK_RC(dbrep_env_open(dir, &cfg, &env), DBREP_OK);
    CHECK_RC(dbrep_rep_set_transport(env, 1, hub_send, NULL), DBREP_OK);
    CHECK_RC(dbrep_rep_set_nsites(env, 1), DBREP_OK);
    CHECK_RC(dbrep_rep_start(env, NULL, 0, DBREP_MASTER), DBREP_OK);
    dbrep_txn *t;
    CHECK_RC(dbrep_txn_begin(env, &t), DBREP_OK);
    CHECK_RC(dbrep_txn_put(t, (const uint8_t *)"disk", 4, (const uint8_t *)"yes", 3), DBREP_OK);
    dbrep_commit_info ci;
    CHECK_RC(dbrep_txn_commit(t, &ci), DBREP_OK);
    CHECK(ci.permanent);
    CHECK_RC(dbrep_log_flush(env), DBREP_OK);
    dbrep_lsn ck;
    CHECK_RC(dbrep_txn_checkpoint(env, &ck), DBREP_OK);
    CHECK(ck.file != 0);
    CHECK_RC(dbrep_env_close(env), DBREP_OK);

    /* Reopened, the commit is still there. */
    cfg.durability = DBREP_DURABILITY_NOSYNC;
    CHECK_RC(dbrep_env_open(dir, &cfg, &env), DBREP_OK);
    dbrep_buf v;
    CHECK_RC(dbrep_get(env, (const uint8_t *)"disk", 4, DBREP_READ_STALE, 0, &v), DBREP_OK);
    CHECK(v.len == 3 && memcmp(v.data, "yes", 3) == 0);
    dbrep_buf_free(&v);
    CHECK_RC(dbrep_rep_set_transport(env, 1, hub_send, NULL), DBREP_OK);
    CHECK_RC(dbrep_rep_set_nsites(env, 1), DBREP_OK);
    CHECK_RC(dbrep_rep_start(env, NULL, 0, DBREP_MASTER), DBREP_OK);
    /* A lone master is its own majority: linearizable reads need nobody else. */
    CHECK(has(env, DBREP_READ_LINEARIZABLE, "disk", "yes"));
    CHECK(has(env, DBREP_READ_FOLLOWER, "disk", "yes"));
    dbrep_buf_free(&v); /* emptied by the first: a no-op */
    CHECK_RC(dbrep_env_close(env), DBREP_OK);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_settings(void) {
    dbrep_env *env;
    CHECK_RC(dbrep_env_open_in_memory(NULL, &env), DBREP_OK);
    uint32_t u, u2;
    uint64_t q, q2;
    int on;

    CHECK_RC(dbrep_rep_set_priority(env, 42), DBREP_OK);
    CHECK_RC(dbrep_rep_get_priority(env, &u), DBREP_OK);
    CHECK(u == 42);
    CHECK_RC(dbrep_rep_get_priority(env, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_nsites(env, 3), DBREP_OK);
    CHECK_RC(dbrep_rep_get_nsites(env, &u), DBREP_OK);
    CHECK(u == 3);
    CHECK_RC(dbrep_rep_set_timeout(env, DBREP_ELECTION_TIMEOUT, 123456), DBREP_OK);
    CHECK_RC(dbrep_rep_get_timeout(env, DBREP_ELECTION_TIMEOUT, &q), DBREP_OK);
    CHECK(q == 123456);
    const int kinds[] = {DBREP_ACK_TIMEOUT, DBREP_ELECTION_RETRY, DBREP_FULL_ELECTION_TIMEOUT,
                         DBREP_HEARTBEAT_MONITOR, DBREP_HEARTBEAT_SEND, DBREP_LEASE_TIMEOUT,
                         DBREP_MASTER_SEARCH_TIMEOUT};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        CHECK_RC(dbrep_rep_set_timeout(env, kinds[i], 1000 + i), DBREP_OK);
        CHECK_RC(dbrep_rep_get_timeout(env, kinds[i], &q), DBREP_OK);
        CHECK(q == 1000 + i);
    }
    CHECK_RC(dbrep_rep_set_timeout(env, 77, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_timeout(env, 77, &q), DBREP_EINVAL);

    const uint32_t flags[] = {DBREP_CONF_AUTOINIT, DBREP_CONF_DELAYCLIENT,
                              DBREP_CONF_LEASE, DBREP_CONF_NOWAIT,
                              DBREP_CONF_ALLOW_SUBMAJORITY, DBREP_CONF_MANUAL_MASTER};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        CHECK_RC(dbrep_rep_get_config(env, flags[i], &on), DBREP_OK);
        CHECK(on == (flags[i] == DBREP_CONF_AUTOINIT));
        CHECK_RC(dbrep_rep_set_config(env, flags[i], !on), DBREP_OK);
        CHECK_RC(dbrep_rep_get_config(env, flags[i], &on), DBREP_OK);
        CHECK(on == (flags[i] != DBREP_CONF_AUTOINIT));
        CHECK_RC(dbrep_rep_set_config(env, flags[i], !on), DBREP_OK);
    }
    /* Bulk transfer is always on: turning it off is refused. */
    CHECK_RC(dbrep_rep_get_config(env, DBREP_CONF_BULK, &on), DBREP_OK);
    CHECK(on == 1);
    CHECK_RC(dbrep_rep_set_config(env, DBREP_CONF_BULK, 0), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_config(env, DBREP_CONF_BULK, 1), DBREP_OK);
    CHECK_RC(dbrep_rep_set_config(env, 0x8, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_get_config(env, 0x8, &on), DBREP_EINVAL);

    CHECK_RC(dbrep_rep_set_limit(env, 5000), DBREP_OK);
    CHECK_RC(dbrep_rep_get_limit(env, &q), DBREP_OK);
    CHECK(q == 5000);
    const int policies[] = {DBREP_ACKS_ALL, DBREP_ACKS_ALL_AVAILABLE, DBREP_ACKS_NONE,
                            DBREP_ACKS_ONE, DBREP_ACKS_QUORUM};
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
        CHECK_RC(dbrep_rep_set_ack_policy(env, policies[i]), DBREP_OK);
    CHECK_RC(dbrep_rep_set_ack_policy(env, 3), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_clockskew(env, 102, 100), DBREP_OK);
    CHECK_RC(dbrep_rep_get_clockskew(env, &u, &u2), DBREP_OK);
    CHECK(u == 102 && u2 == 100);
    CHECK_RC(dbrep_rep_get_clockskew(env, &u, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_request(env, 10, 20), DBREP_OK);
    CHECK_RC(dbrep_rep_get_request(env, &q, &q2), DBREP_OK);
    CHECK(q == 10 && q2 == 20);
    CHECK_RC(dbrep_rep_get_request(env, NULL, &q2), DBREP_EINVAL);

    /* Wrong order: rep_start before the transport; bad start flags. */
    CHECK_RC(dbrep_rep_start(env, NULL, 0, DBREP_CLIENT), DBREP_EINVAL);
    CHECK(strstr(dbrep_last_error(), "transport") != NULL);
    CHECK_RC(dbrep_rep_set_transport(env, 1, NULL, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_transport(env, -5, hub_send, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_set_transport(env, 1, hub_send, NULL), DBREP_OK);
    CHECK_RC(dbrep_rep_start(env, NULL, 0, DBREP_CLIENT | DBREP_MASTER), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_start(env, NULL, 5, DBREP_CLIENT), DBREP_EINVAL); /* null with a length */
    dbrep_rep_stat_t st;
    CHECK_RC(dbrep_rep_stat(env, NULL, 0), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_stat(env, &st, 0x40), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_stat(env, &st, 0), DBREP_OK);
    CHECK(st.st_status == 0 && st.st_env_id == 1);
    CHECK_RC(dbrep_env_close(env), DBREP_OK);
}

static void open_site(hub *h, site_ctx *ctx, int eid, uint32_t nsites) {
    dbrep_open_config cfg;
    dbrep_open_config_init(&cfg);
    cfg.use_seed = 1;
    cfg.seed = (uint64_t)eid;
    CHECK_RC(dbrep_env_open_in_memory(&cfg, &h->env[eid]), DBREP_OK);
    ctx->h = h;
    ctx->eid = eid;
    h->up[eid] = 1;
    CHECK_RC(dbrep_rep_set_transport(h->env[eid], eid, hub_send, ctx), DBREP_OK);
    CHECK_RC(dbrep_set_event_notify(h->env[eid], on_event, ctx), DBREP_OK);
    CHECK_RC(dbrep_rep_set_nsites(h->env[eid], nsites), DBREP_OK);
    CHECK_RC(dbrep_rep_set_timeout(h->env[eid], DBREP_ACK_TIMEOUT, 20000), DBREP_OK);
    CHECK_RC(dbrep_rep_set_timeout(h->env[eid], DBREP_ELECTION_TIMEOUT, 5000000), DBREP_OK);
}

static void put1(dbrep_env *env, const char *k, const char *v, dbrep_commit_info *ci, int want) {
    dbrep_txn *t;
    CHECK_RC(dbrep_txn_begin(env, &t), DBREP_OK);
    CHECK_RC(dbrep_txn_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v)), DBREP_OK);
    CHECK_RC(dbrep_txn_commit(t, ci), want);
}

static int has(dbrep_env *env, int level, const char *k, const char *v) {
    dbrep_buf b;
    int rc = dbrep_get(env, (const uint8_t *)k, strlen(k), level, 2000000, &b);
    int ok = rc == DBREP_OK && b.len == strlen(v) && memcmp(b.data, v, b.len) == 0;
    dbrep_buf_free(&b);
    return ok;
}

static void test_two_sites(void) {
    hub h;
    memset(&h, 0, sizeof h);
    h.nsites = 2;
    site_ctx c1, c2;
    open_site(&h, &c1, 1, 2);
    open_site(&h, &c2, 2, 2);
    CHECK_RC(dbrep_rep_set_ack_policy(h.env[1], DBREP_ACKS_NONE), DBREP_OK);
    CHECK_RC(dbrep_rep_start(h.env[1], (const uint8_t *)"site one", 8, DBREP_MASTER), DBREP_OK);
    CHECK(events[DBREP_EVENT_REP_MASTER] == 1);
    newsites = 0;
    CHECK_RC(dbrep_rep_start(h.env[2], (const uint8_t *)"site two", 8, DBREP_CLIENT), DBREP_OK);
    CHECK(deliver(&h) > 0);
    CHECK(newsites >= 1 && strcmp(last_cdata, "site two") == 0);
    CHECK(last_newmaster == 1);

    /* A commit on the master replicates; the client reads it at every level. */
    dbrep_commit_info ci;
    put1(h.env[1], "colour", "blue", &ci, DBREP_OK);
    CHECK(ci.permanent && ci.lsn.file != 0);
    CHECK_RC(dbrep_txn_applied(h.env[1], ci.token, sizeof ci.token, 0), DBREP_OK);
    CHECK_RC(dbrep_txn_applied(h.env[2], ci.token, sizeof ci.token, 0), DBREP_TIMEOUT);
    deliver(&h);
    CHECK_RC(dbrep_txn_applied(h.env[2], ci.token, sizeof ci.token, 1000000), DBREP_OK);
    CHECK_RC(dbrep_txn_applied(h.env[2], ci.token, 3, 0), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_applied(h.env[2], NULL, 12, 0), DBREP_EINVAL);
    CHECK(has(h.env[2], DBREP_READ_STALE, "colour", "blue"));
    dbrep_buf b;
    /* The master's linearizable read needs the client's confirmation, which
     * nobody delivers here: it times out (test_open_on_disk reads on a lone
     * master). */
    CHECK_RC(dbrep_get(h.env[1], (const uint8_t *)"colour", 6, DBREP_READ_LINEARIZABLE, 1000, &b),
             DBREP_TIMEOUT);
    CHECK_RC(dbrep_get(h.env[1], (const uint8_t *)"colour", 6, DBREP_READ_FOLLOWER, 1000, &b),
             DBREP_TIMEOUT);
    CHECK_RC(dbrep_get(h.env[2], (const uint8_t *)"colour", 6, DBREP_READ_LINEARIZABLE, 0, &b),
             DBREP_EINVAL); /* wrong role: linearizable reads are the master's */
    CHECK_RC(dbrep_get(h.env[2], (const uint8_t *)"nope", 4, DBREP_READ_STALE, 0, &b), DBREP_NOTFOUND);
    CHECK(b.len == 0);
    CHECK_RC(dbrep_get(h.env[2], (const uint8_t *)"colour", 6, 9, 0, &b), DBREP_EINVAL);
    CHECK_RC(dbrep_get(h.env[2], (const uint8_t *)"colour", 6, DBREP_READ_STALE, 0, NULL), DBREP_EINVAL);
    /* A follower read on the client with nobody delivering times out. */
    CHECK_RC(dbrep_get(h.env[2], (const uint8_t *)"colour", 6, DBREP_READ_FOLLOWER, 1000, &b),
             DBREP_TIMEOUT);
    hub_free(&h);

    /* Wrong role: a commit on the client. */
    put1(h.env[2], "k", "v", NULL, DBREP_EINVAL);
    CHECK(strstr(dbrep_last_error(), "master") != NULL);

    /* An empty transaction commits at once and its token is empty. */
    dbrep_txn *t;
    CHECK_RC(dbrep_txn_begin(h.env[1], &t), DBREP_OK);
    CHECK_RC(dbrep_txn_commit(t, &ci), DBREP_OK);
    CHECK_RC(dbrep_txn_applied(h.env[2], ci.token, sizeof ci.token, 0), DBREP_KEYEMPTY);

    /* A transaction sees its own writes; abort discards them. */
    CHECK_RC(dbrep_txn_begin(h.env[1], &t), DBREP_OK);
    CHECK_RC(dbrep_txn_begin(h.env[1], NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_put(t, (const uint8_t *)"a", 1, (const uint8_t *)"1", 1), DBREP_OK);
    CHECK_RC(dbrep_txn_put(t, NULL, 3, (const uint8_t *)"1", 1), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_get(t, (const uint8_t *)"a", 1, &b), DBREP_OK);
    CHECK(b.len == 1 && b.data[0] == '1');
    dbrep_buf_free(&b);
    CHECK_RC(dbrep_txn_get(t, (const uint8_t *)"colour", 6, &b), DBREP_OK);
    CHECK(b.len == 4);
    dbrep_buf_free(&b);
    CHECK_RC(dbrep_txn_delete(t, (const uint8_t *)"a", 1), DBREP_OK);
    CHECK_RC(dbrep_txn_delete(t, NULL, 1), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_get(t, (const uint8_t *)"a", 1, &b), DBREP_NOTFOUND);
    CHECK_RC(dbrep_txn_get(t, (const uint8_t *)"a", 1, NULL), DBREP_EINVAL);
    CHECK_RC(dbrep_txn_abort(t), DBREP_OK);
    CHECK(!has(h.env[1], DBREP_READ_STALE, "a", "1"));

    /* A commit whose ack never comes: committed but not permanent. */
    CHECK_RC(dbrep_rep_set_ack_policy(h.env[1], DBREP_ACKS_ALL), DBREP_OK);
    int before = events[DBREP_EVENT_REP_PERM_FAILED];
    put1(h.env[1], "late", "ack", &ci, DBREP_OK);
    CHECK(!ci.permanent);
    CHECK(events[DBREP_EVENT_REP_PERM_FAILED] == before + 1);
    deliver(&h);
    CHECK(has(h.env[2], DBREP_READ_STALE, "late", "ack"));

    /* Garbage in: an error code, no crash, the site still works. */
    uint8_t junk[40];
    memset(junk, 0xAB, sizeof junk);
    dbrep_eid e;
    dbrep_lsn l;
    CHECK_RC(dbrep_rep_process_message(h.env[2], junk, sizeof junk, junk, sizeof junk, 1, &e, &l, NULL),
             DBREP_MALFORMED);
    CHECK_RC(dbrep_rep_process_message(h.env[2], junk, 3, NULL, 0, 1, NULL, NULL, NULL), DBREP_MALFORMED);
    CHECK_RC(dbrep_rep_process_message(h.env[2], NULL, 28, NULL, 0, 1, NULL, NULL, NULL), DBREP_EINVAL);
    /* A real message labelled with a reserved (negative) eid, and a real
     * control header with a truncated rec: errors or ignored, never a crash
     * or a failed handle. */
    put1(h.env[1], "x", "1", NULL, DBREP_OK);
    CHECK(h.head != NULL);
    if (h.head) {
        int rc = dbrep_rep_process_message(h.env[2], h.head->control, h.head->control_len,
                                           h.head->rec, h.head->rec_len, -7, NULL, NULL, NULL);
        CHECK(rc != DBREP_RUNRECOVERY);
        if (h.head->rec_len > 1) {
            rc = dbrep_rep_process_message(h.env[2], h.head->control, h.head->control_len,
                                           h.head->rec, h.head->rec_len - 1, 1, NULL, NULL, NULL);
            CHECK(rc == DBREP_MALFORMED);
        }
    }
    deliver(&h);
    CHECK(has(h.env[2], DBREP_READ_STALE, "x", "1"));
    dbrep_rep_stat_t st;
    CHECK_RC(dbrep_rep_stat(h.env[2], &st, 0), DBREP_OK);
    CHECK(st.st_msgs_malformed >= 2 && st.st_status == DBREP_CLIENT && st.st_master == 1);
    CHECK(st.st_log_records > 0);
    CHECK_RC(dbrep_rep_stat(h.env[2], &st, DBREP_STAT_CLEAR), DBREP_OK);
    CHECK_RC(dbrep_rep_stat(h.env[2], &st, 0), DBREP_OK);
    CHECK(st.st_msgs_malformed == 0);

    /* The timer, flush and sync. */
    uint64_t next = 0;
    CHECK_RC(dbrep_rep_tick(h.env[1], &next), DBREP_OK);
    CHECK_RC(dbrep_rep_tick(h.env[2], NULL), DBREP_OK);
    CHECK_RC(dbrep_rep_flush(h.env[1]), DBREP_OK);
    CHECK(h.head != NULL); /* the flush sent the last record again */
    deliver(&h);
    CHECK_RC(dbrep_rep_sync(h.env[2]), DBREP_OK);
    deliver(&h);

    /* Events can be switched off. */
    CHECK_RC(dbrep_set_event_notify(h.env[1], NULL, NULL), DBREP_OK);
    int masters = events[DBREP_EVENT_REP_CLIENT];
    CHECK_RC(dbrep_rep_start(h.env[1], NULL, 0, DBREP_CLIENT), DBREP_OK);
    CHECK(events[DBREP_EVENT_REP_CLIENT] == masters);

    hub_free(&h);
    CHECK_RC(dbrep_env_close(h.env[1]), DBREP_OK);
    CHECK_RC(dbrep_env_close(h.env[2]), DBREP_OK);
}

static void test_elections(void) {
    hub h;
    memset(&h, 0, sizeof h);
    h.nsites = 3;
    site_ctx c[4];
    for (int i = 1; i <= 3; i++) {
        open_site(&h, &c[i], i, 3);
        CHECK_RC(dbrep_rep_set_priority(h.env[i], (uint32_t)(10 * i)), DBREP_OK);
        CHECK_RC(dbrep_rep_start(h.env[i], NULL, 0, DBREP_CLIENT), DBREP_OK);
    }
    deliver(&h);
    dbrep_eid winner = 0;
    CHECK_RC(dbrep_rep_elect_nowait(h.env[1], 0, 0, 0, &winner), DBREP_IN_PROGRESS);
    CHECK_RC(dbrep_rep_elect_nowait(h.env[1], 0, 0, 7, &winner) == DBREP_EINVAL ||
             dbrep_rep_elect_nowait(h.env[1], 0, 0, 7, &winner) == DBREP_IN_PROGRESS, 1);
    CHECK_RC(dbrep_rep_elect_nowait(h.env[2], 0, 0, 0, NULL), DBREP_IN_PROGRESS);
    CHECK_RC(dbrep_rep_elect_nowait(h.env[3], 0, 0, 0, NULL), DBREP_IN_PROGRESS);
    int elected_before = events[DBREP_EVENT_REP_ELECTED];
    for (int round = 0; round < 100 && events[DBREP_EVENT_REP_ELECTED] == elected_before; round++) {
        deliver(&h);
        for (int i = 1; i <= 3; i++)
            dbrep_rep_tick(h.env[i], NULL);
    }
    CHECK(events[DBREP_EVENT_REP_ELECTED] == elected_before + 1);
    /* The highest priority wins; it starts as master and the others follow. */
    CHECK_RC(dbrep_rep_elect_nowait(h.env[3], 0, 0, 0, &winner) , DBREP_IN_PROGRESS);
    hub_free(&h);
    dbrep_rep_stat_t st;
    CHECK_RC(dbrep_rep_stat(h.env[3], &st, 0), DBREP_OK);
    CHECK(st.st_elections_won >= 1);
    CHECK_RC(dbrep_rep_start(h.env[3], NULL, 0, DBREP_MASTER), DBREP_OK);
    deliver(&h);
    dbrep_commit_info ci;
    CHECK_RC(dbrep_rep_set_ack_policy(h.env[3], DBREP_ACKS_NONE), DBREP_OK);
    put1(h.env[3], "after", "election", &ci, DBREP_OK);
    deliver(&h);
    CHECK(has(h.env[1], DBREP_READ_STALE, "after", "election"));
    CHECK(has(h.env[2], DBREP_READ_STALE, "after", "election"));

    /* A lone site of a one-site group wins a blocking election at once. */
    hub h1;
    memset(&h1, 0, sizeof h1);
    h1.nsites = 1;
    site_ctx c1;
    open_site(&h1, &c1, 1, 1);
    CHECK_RC(dbrep_rep_start(h1.env[1], NULL, 0, DBREP_CLIENT), DBREP_OK);
    CHECK_RC(dbrep_rep_elect(h1.env[1], 1, 1, 0, &winner), DBREP_OK);
    CHECK(winner == 1);
    hub_free(&h1);
    CHECK_RC(dbrep_env_close(h1.env[1]), DBREP_OK);

    for (int i = 1; i <= 3; i++)
        CHECK_RC(dbrep_env_close(h.env[i]), DBREP_OK);
}

/* Replicated group membership: site 1 founds the group, site 2 joins
 * through the protocol; the master refuses to remove itself. */
static void test_group(void) {
    hub h;
    memset(&h, 0, sizeof h);
    h.nsites = 2;
    site_ctx c1, c2;
    open_site(&h, &c1, 1, 0);
    open_site(&h, &c2, 2, 0);
    for (int i = 1; i <= 2; i++) {
        char addr[16];
        int n = snprintf(addr, sizeof addr, "site%d", i);
        CHECK_RC(dbrep_rep_set_config(h.env[i], DBREP_CONF_GROUP_MEMBERSHIP, 1), DBREP_OK);
        CHECK_RC(dbrep_rep_set_local_addr(h.env[i], (const uint8_t *)addr, (size_t)n), DBREP_OK);
    }
    CHECK_RC(dbrep_rep_set_nsites(h.env[1], 3), DBREP_EINVAL); /* not with membership */
    size_t n = 99;
    CHECK_RC(dbrep_rep_get_nmembers(h.env[1], &n), DBREP_OK);
    CHECK(n == 0);
    CHECK_RC(dbrep_rep_get_nmembers(h.env[1], NULL), DBREP_EINVAL);
    int before = events[DBREP_EVENT_REP_GROUP_CHANGED];
    CHECK_RC(dbrep_rep_start(h.env[1], NULL, 0, DBREP_MASTER), DBREP_OK);
    CHECK_RC(dbrep_rep_get_nmembers(h.env[1], &n), DBREP_OK);
    CHECK(n == 1);
    CHECK(events[DBREP_EVENT_REP_GROUP_CHANGED] > before);
    CHECK_RC(dbrep_rep_start(h.env[2], NULL, 0, DBREP_CLIENT), DBREP_OK);
    for (int round = 0; round < 50 && n < 2; round++) {
        deliver(&h);
        put1(h.env[1], "g", "v", NULL, DBREP_OK);
        deliver(&h);
        CHECK_RC(dbrep_rep_get_nmembers(h.env[2], &n), DBREP_OK);
    }
    CHECK(n == 2);
    dbrep_eid eid = -1;
    int electable = -1;
    dbrep_buf addr;
    CHECK_RC(dbrep_rep_get_member(h.env[2], 1, &eid, &electable, &addr), DBREP_OK);
    CHECK(eid == 2 && electable == 1 && addr.len == 5 && memcmp(addr.data, "site2", 5) == 0);
    dbrep_buf_free(&addr);
    CHECK_RC(dbrep_rep_get_member(h.env[2], 2, &eid, NULL, NULL), DBREP_NOTFOUND);
    dbrep_buf local;
    CHECK_RC(dbrep_rep_get_local_addr(h.env[2], &local), DBREP_OK);
    CHECK(local.len == 5 && memcmp(local.data, "site2", 5) == 0);
    dbrep_buf_free(&local);
    CHECK(local.data == NULL && local.len == 0);
    CHECK_RC(dbrep_rep_get_local_addr(h.env[2], NULL), DBREP_EINVAL);
    dbrep_lsn lsn;
    CHECK_RC(dbrep_rep_remove_site(h.env[1], 1, &lsn), DBREP_EINVAL); /* the master */
    CHECK(strstr(dbrep_last_error(), "master") != NULL);
    CHECK_RC(dbrep_rep_add_site(h.env[2], 7, (const uint8_t *)"x", 1, 1, &lsn), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_leave(h.env[1]), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_add_site(h.env[1], 7, NULL, 5, 1, &lsn), DBREP_EINVAL);
    CHECK_RC(dbrep_rep_remove_site(NULL, 2, NULL), DBREP_EINVAL);
    hub_free(&h);
    for (int i = 1; i <= 2; i++)
        CHECK_RC(dbrep_env_close(h.env[i]), DBREP_OK);
}

static void test_shutdown(void) {
    dbrep_env *env;
    CHECK_RC(dbrep_env_open_in_memory(NULL, &env), DBREP_OK);
    CHECK_RC(dbrep_rep_set_transport(env, 1, hub_send, NULL), DBREP_OK);
    dbrep_txn *t;
    CHECK_RC(dbrep_txn_begin(env, &t), DBREP_OK);
    CHECK_RC(dbrep_env_shutdown(env), DBREP_OK);
    CHECK_RC(dbrep_env_shutdown(env), DBREP_CLOSED);
    uint32_t u;
    dbrep_buf b;
    CHECK_RC(dbrep_rep_get_priority(env, &u), DBREP_CLOSED);
    CHECK_RC(dbrep_rep_start(env, NULL, 0, DBREP_MASTER), DBREP_CLOSED);
    CHECK_RC(dbrep_get(env, (const uint8_t *)"k", 1, DBREP_READ_STALE, 0, &b), DBREP_CLOSED);
    dbrep_txn *t2;
    CHECK_RC(dbrep_txn_begin(env, &t2), DBREP_CLOSED);
    CHECK(t2 == NULL);
    /* The transaction begun before outlives the handle and says closed. */
    CHECK_RC(dbrep_env_close(env), DBREP_OK);
    CHECK_RC(dbrep_txn_put(t, (const uint8_t *)"k", 1, (const uint8_t *)"v", 1), DBREP_CLOSED);
    CHECK_RC(dbrep_txn_get(t, (const uint8_t *)"k", 1, &b), DBREP_CLOSED);
    CHECK_RC(dbrep_txn_delete(t, (const uint8_t *)"k", 1), DBREP_CLOSED);
    CHECK_RC(dbrep_txn_commit(t, NULL), DBREP_CLOSED); /* and frees it */
}

int main(void) {
    test_strerror();
    test_null_handles();
    test_open_on_disk();
    test_settings();
    test_two_sites();
    test_elections();
    test_group();
    test_shutdown();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
