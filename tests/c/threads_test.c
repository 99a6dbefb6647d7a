/*
 * The C API from several threads: three in-memory sites, one delivery
 * thread (woken by a condition variable when a message is queued), commits
 * from four threads at once that wait for acknowledgements, and blocking
 * elections held on two threads at once after the master is lost.
 *
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "dbrep.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        int ok_ = (cond);                                                            \
        pthread_mutex_lock(&check_lock);                                             \
        if (ok_)                                                                     \
            passed++;                                                                \
        else {                                                                       \
            failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
        pthread_mutex_unlock(&check_lock);                                           \
    } while (0)

#define NSITES 3

typedef struct msg {
    struct msg *next;
    int from, to;
    uint8_t *buf; /* control, then rec */
    size_t control_len, rec_len;
} msg;

static dbrep_env *envs[NSITES + 1];
static int up[NSITES + 1];
static int eids[NSITES + 1];
static pthread_mutex_t hub_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hub_cond = PTHREAD_COND_INITIALIZER;
static msg *head, *tail;
static int stopping;

static int send_fn(void *ctx, const uint8_t *control, size_t control_len, const uint8_t *rec,
                   size_t rec_len, const dbrep_lsn *lsn, dbrep_eid eid, uint32_t flags) {
    int from = *(int *)ctx;
    (void)lsn;
    (void)flags;
    pthread_mutex_lock(&hub_lock);
    int sent = up[from];
    for (int to = 1; sent && to <= NSITES; to++) {
        if (to == from || (eid != DBREP_EID_BROADCAST && eid != to))
            continue;
        msg *m = calloc(1, sizeof *m);
        m->from = from;
        m->to = to;
        m->buf = malloc(control_len + rec_len + 1);
        memcpy(m->buf, control, control_len);
        if (rec_len)
            memcpy(m->buf + control_len, rec, rec_len);
        m->control_len = control_len;
        m->rec_len = rec_len;
        if (tail)
            tail->next = m;
        else
            head = m;
        tail = m;
    }
    pthread_cond_signal(&hub_cond);
    pthread_mutex_unlock(&hub_lock);
    return sent ? 0 : 1;
}

static void *deliverer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&hub_lock);
    for (;;) {
        while (!head && !stopping)
            pthread_cond_wait(&hub_cond, &hub_lock);
        if (!head && stopping)
            break;
        msg *m = head;
        head = m->next;
        if (!head)
            tail = NULL;
        int deliver = up[m->from] && up[m->to];
        pthread_mutex_unlock(&hub_lock);
        if (deliver) {
            int rc = dbrep_rep_process_message(envs[m->to], m->buf, m->control_len,
                                               m->buf + m->control_len, m->rec_len, m->from, NULL,
                                               NULL, NULL);
            CHECK(rc != DBREP_MALFORMED && rc != DBREP_RUNRECOVERY && rc != DBREP_JOIN_FAILURE);
        }
        free(m->buf);
        free(m);
        pthread_mutex_lock(&hub_lock);
    }
    pthread_mutex_unlock(&hub_lock);
    return NULL;
}

static int commit_one(dbrep_env *env, const char *k, const char *v, dbrep_commit_info *ci) {
    dbrep_txn *t;
    int rc = dbrep_txn_begin(env, &t);
    if (rc)
        return rc;
    rc = dbrep_txn_put(t, (const uint8_t *)k, strlen(k), (const uint8_t *)v, strlen(v));
    if (rc) {
        dbrep_txn_abort(t);
        return rc;
    }
    return dbrep_txn_commit(t, ci);
}

typedef struct {
    int id;
    int permanent;
} writer_arg;

static void *writer(void *p) {
    writer_arg *w = p;
    for (int i = 0; i < 20; i++) {
        char k[32];
        snprintf(k, sizeof k, "w%d-%d", w->id, i);
        dbrep_commit_info ci;
        int rc = commit_one(envs[1], k, "v", &ci);
        CHECK(rc == DBREP_OK);
        w->permanent += rc == DBREP_OK && ci.permanent;
    }
    return NULL;
}

typedef struct {
    int site;
    int rc;
    dbrep_eid master;
} elect_arg;

static void *elector(void *p) {
    elect_arg *e = p;
    e->rc = dbrep_rep_elect(envs[e->site], 0, 0, 0, &e->master);
    if (e->rc == DBREP_OK)
        CHECK(dbrep_rep_start(envs[e->site], NULL, 0, DBREP_MASTER) == DBREP_OK);
    return NULL;
}

int main(void) {
    for (int i = 1; i <= NSITES; i++) {
        eids[i] = i;
        up[i] = 1;
        dbrep_open_config cfg;
        dbrep_open_config_init(&cfg);
        cfg.use_seed = 1;
        cfg.seed = (uint64_t)i;
        CHECK(dbrep_env_open_in_memory(&cfg, &envs[i]) == DBREP_OK);
        CHECK(dbrep_rep_set_transport(envs[i], i, send_fn, &eids[i]) == DBREP_OK);
        CHECK(dbrep_rep_set_nsites(envs[i], NSITES) == DBREP_OK);
        CHECK(dbrep_rep_set_priority(envs[i], (uint32_t)(10 * i)) == DBREP_OK);
        CHECK(dbrep_rep_set_timeout(envs[i], DBREP_ACK_TIMEOUT, 10000000) == DBREP_OK);
        CHECK(dbrep_rep_set_timeout(envs[i], DBREP_ELECTION_TIMEOUT, 2000000) == DBREP_OK);
    }
    pthread_t d;
    pthread_create(&d, NULL, deliverer, NULL);
    CHECK(dbrep_rep_start(envs[1], NULL, 0, DBREP_MASTER) == DBREP_OK);
    for (int i = 2; i <= NSITES; i++)
        CHECK(dbrep_rep_start(envs[i], NULL, 0, DBREP_CLIENT) == DBREP_OK);

    /* Four writers at once; QUORUM acks come back through the deliverer. */
    pthread_t w[4];
    writer_arg wa[4];
    for (int i = 0; i < 4; i++) {
        wa[i].id = i;
        wa[i].permanent = 0;
        pthread_create(&w[i], NULL, writer, &wa[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i], NULL);
        CHECK(wa[i].permanent == 20);
    }
    dbrep_commit_info ci;
    CHECK(commit_one(envs[1], "last", "one", &ci) == DBREP_OK && ci.permanent);
    for (int i = 2; i <= NSITES; i++)
        CHECK(dbrep_txn_applied(envs[i], ci.token, sizeof ci.token, 10000000) == DBREP_OK);
    /* A follower read on a client asks the master, through the deliverer. */
    dbrep_buf b;
    CHECK(dbrep_get(envs[2], (const uint8_t *)"w3-19", 5, DBREP_READ_FOLLOWER, 10000000, &b) ==
          DBREP_OK);
    dbrep_buf_free(&b);
    CHECK(dbrep_get(envs[1], (const uint8_t *)"w0-0", 4, DBREP_READ_LINEARIZABLE, 10000000, &b) ==
          DBREP_OK);
    dbrep_buf_free(&b);

    /* Lose the master; both survivors hold a blocking election at once. */
    pthread_mutex_lock(&hub_lock);
    up[1] = 0;
    pthread_mutex_unlock(&hub_lock);
    pthread_t e[2];
    elect_arg ea[2] = {{2, -1, 0}, {3, -1, 0}};
    for (int i = 0; i < 2; i++)
        pthread_create(&e[i], NULL, elector, &ea[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(e[i], NULL);
    /* Site 3 has the higher priority and the same log: it wins. */
    CHECK(ea[1].rc == DBREP_OK && ea[1].master == 3);
    CHECK(ea[0].rc == DBREP_NEWMASTER && ea[0].master == 3);
    CHECK(commit_one(envs[3], "after", "election", &ci) == DBREP_OK && ci.permanent);
    CHECK(dbrep_txn_applied(envs[2], ci.token, sizeof ci.token, 10000000) == DBREP_OK);

    /* Shut down while the deliverer may still be calling in. */
    for (int i = 1; i <= NSITES; i++)
        CHECK(dbrep_env_shutdown(envs[i]) == DBREP_OK);
    pthread_mutex_lock(&hub_lock);
    stopping = 1;
    pthread_cond_signal(&hub_cond);
    pthread_mutex_unlock(&hub_lock);
    pthread_join(d, NULL);
    for (int i = 1; i <= NSITES; i++)
        CHECK(dbrep_env_close(envs[i]) == DBREP_OK);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
