/*
 * The network host from C (dbrep_net_*, the Replication Manager's role):
 * three sites in one process over loopback TCP, site 1 started as master.
 * A commit on the master becomes permanent and reaches both clients; then
 * the error paths: null handles, bad addresses and flags, starting twice.
 *
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include "dbrep.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int passed, failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond)                                                                      \
            passed++;                                                                  \
        else {                                                                         \
            failed++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, \
                    __LINE__, #cond, dbrep_last_error());                              \
        }                                                                              \
    } while (0)

#define NSITES 3

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits (up to `secs`) for `want` from `net`; other events are skipped. */
static int wait_event(dbrep_net *net, int want, double secs) {
    double deadline = now() + secs;
    while (now() < deadline) {
        int ev;
        dbrep_event_info info;
        int rc = dbrep_net_next_event(net, 200000, &ev, &info);
        if (rc == DBREP_OK && ev == want)
            return 1;
        if (rc != DBREP_OK && rc != DBREP_TIMEOUT)
            return 0;
    }
    return 0;
}

int main(void) {
    dbrep_env *env[NSITES + 1];
    dbrep_net *net[NSITES + 1];
    char addr[NSITES + 1][32];

    for (int i = 1; i <= NSITES; i++) {
        CHECK(dbrep_env_open_in_memory(NULL, &env[i]) == DBREP_OK);
        CHECK(dbrep_rep_set_nsites(env[i], NSITES) == DBREP_OK);
        dbrep_net_config cfg;
        CHECK(dbrep_net_config_init(&cfg) == DBREP_OK);
        cfg.eid = i;
        cfg.listen = "127.0.0.1:0";
        cfg.start_flags = i == 1 ? DBREP_MASTER : DBREP_CLIENT;
        CHECK(dbrep_net_create(env[i], &cfg, &net[i]) == DBREP_OK);
        uint16_t port = 0;
        CHECK(dbrep_net_local_port(net[i], &port) == DBREP_OK && port != 0);
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%u", (unsigned)port);
    }
    for (int i = 1; i <= NSITES; i++) {
        for (int j = 1; j <= NSITES; j++)
            if (j != i)
                CHECK(dbrep_net_add_peer(net[i], addr[j]) == DBREP_OK);
        CHECK(dbrep_net_start(net[i]) == DBREP_OK);
    }
    CHECK(dbrep_net_start(net[1]) == DBREP_EINVAL); /* wrong order: already started */
    for (int i = 2; i <= NSITES; i++)
        CHECK(wait_event(net[i], DBREP_EVENT_REP_NEWMASTER, 60));

    /* The first commits can race the clients' connections: retry until one
     * is permanent (bounded). */
    dbrep_commit_info ci;
    memset(&ci, 0, sizeof ci);
    double deadline = now() + 60;
    while (!ci.permanent && now() < deadline) {
        dbrep_txn *t;
        CHECK(dbrep_txn_begin(env[1], &t) == DBREP_OK);
        CHECK(dbrep_txn_put(t, (const uint8_t *)"net", 3, (const uint8_t *)"works", 5) == DBREP_OK);
        CHECK(dbrep_txn_commit(t, &ci) == DBREP_OK);
    }
    CHECK(ci.permanent);
    for (int i = 2; i <= NSITES; i++) {
        CHECK(dbrep_txn_applied(env[i], ci.token, sizeof ci.token, 30000000) == DBREP_OK);
        dbrep_buf v;
        CHECK(dbrep_get(env[i], (const uint8_t *)"net", 3, DBREP_READ_STALE, 0, &v) == DBREP_OK);
        CHECK(v.len == 5 && memcmp(v.data, "works", 5) == 0);
        dbrep_buf_free(&v);
    }
    /* An election asked for by hand runs on the host's own thread. */
    CHECK(dbrep_net_elect(net[2]) == DBREP_OK);

    /* Error paths. */
    int ev;
    dbrep_net *bad = (dbrep_net *)&ev;
    dbrep_net_config cfg;
    dbrep_net_config_init(&cfg);
    CHECK(dbrep_net_config_init(NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_create(env[1], NULL, &bad) == DBREP_EINVAL && bad == NULL);
    CHECK(dbrep_net_create(env[1], &cfg, &bad) == DBREP_EINVAL); /* no listen address */
    cfg.listen = "not an address";
    CHECK(dbrep_net_create(env[1], &cfg, &bad) == DBREP_EINVAL);
    cfg.listen = "127.0.0.1:0";
    cfg.start_flags = 7;
    CHECK(dbrep_net_create(env[1], &cfg, &bad) == DBREP_EINVAL);
    cfg.start_flags = DBREP_CLIENT;
    cfg.npeers = 2; /* peers null with a length */
    CHECK(dbrep_net_create(env[1], &cfg, &bad) == DBREP_EINVAL);
    cfg.npeers = 0;
    cfg.eid = -3;
    CHECK(dbrep_net_create(env[1], &cfg, &bad) == DBREP_EINVAL);
    CHECK(dbrep_net_create(NULL, &cfg, &bad) == DBREP_EINVAL);
    CHECK(dbrep_net_local_port(NULL, NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_local_port(net[1], NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_add_peer(NULL, "127.0.0.1:1") == DBREP_EINVAL);
    CHECK(dbrep_net_add_peer(net[1], NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_add_peer(net[1], "\xff:1") == DBREP_EINVAL);
    CHECK(dbrep_net_start(NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_elect(NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_next_event(NULL, 0, &ev, NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_next_event(net[1], 0, NULL, NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_stop(NULL) == DBREP_EINVAL);
    CHECK(dbrep_net_free(NULL) == DBREP_EINVAL);

    for (int i = 1; i <= NSITES; i++) {
        CHECK(dbrep_net_stop(net[i]) == DBREP_OK);
        CHECK(dbrep_net_stop(net[i]) == DBREP_OK); /* stopping a stopped host does nothing */
        CHECK(dbrep_net_elect(net[i]) == DBREP_EINVAL);
        CHECK(dbrep_net_start(net[i]) == DBREP_EINVAL);
        CHECK(dbrep_net_free(net[i]) == DBREP_OK);
        CHECK(dbrep_env_close(env[i]) == DBREP_OK);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
