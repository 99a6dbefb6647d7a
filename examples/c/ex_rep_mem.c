/*
 * ex_rep_mem: three dbrep sites in one process, over in-memory queues.
 *
 * Site 1 starts as master and commits; the clients read the value. Then the
 * master is lost (its messages are dropped from then on and it is closed),
 * the clients' heartbeat monitor notices the silence and their timer calls
 * return DBREP_HOLDELECTION, they elect a new master with the non-blocking
 * election call, and the new master commits again.
 *
 * Single-threaded: the loop delivers queued messages, calls dbrep_rep_tick
 * and sleeps until the earliest deadline any site asked for.
 */
#include "dbrep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NSITES 3

typedef struct msg {
    struct msg *next;
    int from, to;
    uint8_t *control, *rec;
    size_t control_len, rec_len;
} msg;

typedef struct site {
    dbrep_env *env;
    int eid;
    int up;
    int elected; /* set by the ELECTED event, acted on by the main loop */
} site;

static site sites[NSITES + 1];
static msg *head, *tail;

static void die(const char *what, int rc) {
    fprintf(stderr, "ex_rep_mem: %s: %s (%s)\n", what, dbrep_strerror(rc), dbrep_last_error());
    exit(1);
}

/* The transport: copies the message into the queue of each target. The
 * library's buffers are only borrowed for the duration of this call. */
static int send_fn(void *ctx, const uint8_t *control, size_t control_len,
                   const uint8_t *rec, size_t rec_len, const dbrep_lsn *lsn,
                   dbrep_eid eid, uint32_t flags) {
    site *from = ctx;
    (void)lsn;
    (void)flags;
    if (!from->up)
        return 1;
    for (int to = 1; to <= NSITES; to++) {
        if (to == from->eid || (eid != DBREP_EID_BROADCAST && eid != to))
            continue;
        msg *m = calloc(1, sizeof *m);
        m->from = from->eid;
        m->to = to;
        m->control = malloc(control_len);
        memcpy(m->control, control, control_len);
        m->control_len = control_len;
        m->rec = malloc(rec_len ? rec_len : 1);
        if (rec_len)
            memcpy(m->rec, rec, rec_len);
        m->rec_len = rec_len;
        if (tail)
            tail->next = m;
        else
            head = m;
        tail = m;
    }
    return 0;
}

static void on_event(void *ctx, int event, const dbrep_event_info *info) {
    site *s = ctx;
    switch (event) {
    case DBREP_EVENT_REP_ELECTED:
        printf("site %d: won the election\n", s->eid);
        s->elected = 1;
        break;
    case DBREP_EVENT_REP_NEWMASTER:
        printf("site %d: site %d is master\n", s->eid, info->eid);
        break;
    case DBREP_EVENT_REP_MASTER:
        printf("site %d: now master\n", s->eid);
        break;
    default:
        break;
    }
}

static void hold_election(site *s) {
    if (!s->up)
        return;
    int rc = dbrep_rep_elect_nowait(s->env, 0, 0, 0, NULL);
    if (rc != DBREP_IN_PROGRESS && rc != DBREP_OK && rc != DBREP_NEWMASTER)
        fprintf(stderr, "site %d: election: %s\n", s->eid, dbrep_strerror(rc));
}

static void act_on(site *s, int rc) {
    if (rc == DBREP_HOLDELECTION)
        hold_election(s);
    else if (rc == DBREP_DUPMASTER) {
        dbrep_rep_start(s->env, NULL, 0, DBREP_CLIENT);
        hold_election(s);
    }
}

/* One turn of the host loop: deliver what is queued, run the timers, start
 * elected winners as master, and sleep until the next deadline. */
static void turn(void) {
    while (head) {
        msg *m = head;
        head = m->next;
        if (!head)
            tail = NULL;
        site *to = &sites[m->to];
        if (to->up && sites[m->from].up)
            act_on(to, dbrep_rep_process_message(to->env, m->control, m->control_len, m->rec,
                                                 m->rec_len, m->from, NULL, NULL, NULL));
        free(m->control);
        free(m->rec);
        free(m);
    }
    uint64_t sleep_us = 50000;
    for (int i = 1; i <= NSITES; i++) {
        site *s = &sites[i];
        if (!s->up)
            continue;
        if (s->elected) {
            s->elected = 0;
            int rc = dbrep_rep_start(s->env, NULL, 0, DBREP_MASTER);
            if (rc != DBREP_OK)
                die("rep_start(MASTER) after the election", rc);
        }
        uint64_t next;
        act_on(s, dbrep_rep_tick(s->env, &next));
        if (next < sleep_us)
            sleep_us = next;
    }
    if (!head) {
        struct timespec ts = {(time_t)(sleep_us / 1000000), (long)(sleep_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

static int master_eid(void) {
    for (int i = 1; i <= NSITES; i++) {
        dbrep_rep_stat_t st;
        if (sites[i].up && dbrep_rep_stat(sites[i].env, &st, 0) == DBREP_OK &&
            st.st_status == DBREP_MASTER)
            return i;
    }
    return 0;
}

static void put(int eid, const char *key, const char *value) {
    dbrep_txn *txn;
    dbrep_commit_info info;
    int rc = dbrep_txn_begin(sites[eid].env, &txn);
    if (rc != DBREP_OK)
        die("txn_begin", rc);
    rc = dbrep_txn_put(txn, (const uint8_t *)key, strlen(key), (const uint8_t *)value, strlen(value));
    if (rc != DBREP_OK)
        die("txn_put", rc);
    /* With QUORUM acks, this commit waits for a client's ack, which only
     * this thread could deliver: it reports "not permanent" after the ack
     * timeout, stays committed, and becomes permanent once delivered. */
    rc = dbrep_txn_commit(txn, &info);
    if (rc != DBREP_OK)
        die("txn_commit", rc);
    printf("site %d: committed %s=%s at [%u][%u]%s\n", eid, key, value, info.lsn.file,
           info.lsn.offset, info.permanent ? "" : " (not yet permanent)");
}

static void show(const char *key) {
    for (int i = 1; i <= NSITES; i++) {
        if (!sites[i].up)
            continue;
        dbrep_buf v;
        int rc = dbrep_get(sites[i].env, (const uint8_t *)key, strlen(key), DBREP_READ_STALE, 0, &v);
        if (rc == DBREP_OK)
            printf("site %d reads %s=%.*s\n", i, key, (int)v.len, (const char *)v.data);
        else
            printf("site %d reads %s: %s\n", i, key, dbrep_strerror(rc));
        dbrep_buf_free(&v);
    }
}

int main(void) {
    for (int i = 1; i <= NSITES; i++) {
        site *s = &sites[i];
        s->eid = i;
        s->up = 1;
        int rc = dbrep_env_open_in_memory(NULL, &s->env);
        if (rc != DBREP_OK)
            die("open", rc);
        if ((rc = dbrep_rep_set_transport(s->env, i, send_fn, s)) != DBREP_OK ||
            (rc = dbrep_set_event_notify(s->env, on_event, s)) != DBREP_OK ||
            (rc = dbrep_rep_set_nsites(s->env, NSITES)) != DBREP_OK ||
            (rc = dbrep_rep_set_priority(s->env, (uint32_t)(100 - i))) != DBREP_OK ||
            (rc = dbrep_rep_set_timeout(s->env, DBREP_ACK_TIMEOUT, 20000)) != DBREP_OK ||
            (rc = dbrep_rep_set_timeout(s->env, DBREP_HEARTBEAT_SEND, 50000)) != DBREP_OK ||
            (rc = dbrep_rep_set_timeout(s->env, DBREP_HEARTBEAT_MONITOR, 200000)) != DBREP_OK)
            die("configure", rc);
        rc = dbrep_rep_start(s->env, NULL, 0, i == 1 ? DBREP_MASTER : DBREP_CLIENT);
        if (rc != DBREP_OK)
            die("rep_start", rc);
    }
    turn();
    put(1, "fruit", "apple");
    turn();
    show("fruit");

    printf("-- losing the master (site 1)\n");
    sites[1].up = 0;
    dbrep_env_close(sites[1].env);
    sites[1].env = NULL;

    int m = 0;
    for (int i = 0; i < 400 && !m; i++) {
        turn();
        m = master_eid();
    }
    if (!m) {
        fprintf(stderr, "ex_rep_mem: no new master was elected\n");
        return 1;
    }
    printf("-- site %d is the new master\n", m);
    put(m, "fruit", "banana");
    turn();
    show("fruit");

    for (int i = 2; i <= NSITES; i++)
        dbrep_env_close(sites[i].env);
    while (head) {
        msg *x = head;
        head = x->next;
        free(x->control);
        free(x->rec);
        free(x);
    }
    return 0;
}
